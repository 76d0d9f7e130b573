// Placeholder until WorkerTests land.
