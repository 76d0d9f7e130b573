// Placeholder until the Cron module lands.
