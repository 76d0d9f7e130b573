// Placeholder until the Worker module lands.
