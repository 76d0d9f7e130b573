import CRdKafka

/// Where a keyed record lands, as the producers' `murmur2_random` partitioner (the Java client's) puts it.
public enum KeyPartitioner {
    /// The partition of `key` among `partitionCount` partitions under murmur2: what lets a reader go straight to
    /// the one partition that holds a key instead of reading them all.
    public static func murmur2(_ key: [UInt8], partitionCount: Int32) -> Int32 {
        precondition(partitionCount > 0, "a topic has at least one partition")
        // librdkafka's murmur2 partitioner reads only the key (the topic handle and opaques are unused); an empty
        // key is hashed like any other, which is what `murmur2_random` does for a non-null key.
        return key.withUnsafeBytes { bytes in
            rd_kafka_msg_partitioner_murmur2(nil, bytes.baseAddress, bytes.count, partitionCount, nil, nil)
        }
    }
}
