// Placeholder until the ActivitySyncTesting module lands.
