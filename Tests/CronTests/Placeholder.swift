// Placeholder until CronTests land.
