/// Hashes that are the same in every process and every version (unlike `Hasher`, which is seeded per process):
/// what two schedulers agree on, what a worker and a scheduler both compute from a record's bytes.
public enum StableHash {
    /// 64-bit FNV-1a of `bytes`.
    ///
    /// `@inlinable` so that callers in other modules get it specialized for their byte collection: unspecialized,
    /// each byte goes through the generic `Sequence` witnesses, and a scheduler hashing a million account records
    /// (~450 MB) on load spent ~9 s on it (`bench scheduler --accounts 1000000`: load 24 s, 15 s specialized).
    @inlinable
    public static func fnv1a(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash
    }
}
