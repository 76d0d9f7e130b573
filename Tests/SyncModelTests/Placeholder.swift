// Placeholder until SyncModelTests land.
