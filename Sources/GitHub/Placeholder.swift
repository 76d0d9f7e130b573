// Placeholder until the GitHub module lands.
