// Placeholder until SealingTests land.
