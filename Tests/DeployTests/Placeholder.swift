// Placeholder until DeployTests land.
