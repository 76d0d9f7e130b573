// Placeholder until the GitHubSimulator module lands.
