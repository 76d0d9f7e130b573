// Placeholder until GitHubSimulatorTests land.
