// Placeholder until KafkaTests land.
