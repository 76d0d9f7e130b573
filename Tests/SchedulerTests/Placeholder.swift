// Placeholder until SchedulerTests land.
