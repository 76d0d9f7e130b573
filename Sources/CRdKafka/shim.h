// The one place librdkafka's headers enter Swift. Only the Kafka module imports this.
#pragma once
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/// One response of `api_key` from `broker_id`, delayed by `rtt_ms` and failing with `err` (0 for none):
/// librdkafka's function takes (error, rtt) pairs as C varargs, which Swift cannot call.
static inline rd_kafka_resp_err_t
activity_sync_mock_push_request_error_rtt(rd_kafka_mock_cluster_t *mcluster, int32_t broker_id,
                                          int16_t api_key, rd_kafka_resp_err_t err, int rtt_ms) {
        return rd_kafka_mock_broker_push_request_error_rtts(mcluster, broker_id, api_key, 1, err, rtt_ms);
}
