/// Where a keyed record lands, as the producers' `murmur2_random` partitioner (the Java client's) puts it.
public enum KeyPartitioner {
    /// The partition of `key` among `partitionCount` partitions under murmur2: what lets a reader go straight to
    /// the one partition that holds a key instead of reading them all.
    public static func murmur2(_ key: [UInt8], partitionCount: Int32) -> Int32 {
        precondition(partitionCount > 0, "a topic has at least one partition")
        return RDKafkaPartitioner.murmur2(key, partitionCount: partitionCount)
    }
}
