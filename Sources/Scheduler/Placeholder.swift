// Placeholder until the Scheduler module lands.
