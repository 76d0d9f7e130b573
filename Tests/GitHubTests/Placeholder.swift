// Placeholder until GitHubTests land.
