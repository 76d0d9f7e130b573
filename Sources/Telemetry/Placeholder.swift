// Placeholder until the Telemetry module lands.
