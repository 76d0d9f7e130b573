// Placeholder until EndToEndTests land.
