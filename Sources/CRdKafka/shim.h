// The one place librdkafka's headers enter Swift. Only the Kafka module imports this.
#pragma once
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
