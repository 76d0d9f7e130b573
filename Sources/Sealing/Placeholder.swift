// Placeholder until the Sealing module lands.
