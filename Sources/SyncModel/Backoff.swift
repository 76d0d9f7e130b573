/// The one retry schedule of the code base: capped exponential backoff, with the jitter left to the caller.
///
/// Every retry loop (Kafka reads and commits, GitHub requests, an account's failure streak) asks a `Backoff` for its
/// next wait instead of writing its own `min(cap, base << attempt)`: the schedules differ only in their two bounds,
/// and one formula is one place to get the overflow and the first attempt right. It lives in SyncModel, not Kafka,
/// because the GitHub client and the worker's failure streak use it too and must not depend on librdkafka.
public struct Backoff: Sendable, Hashable {
    /// The wait before the second attempt (after the first failure).
    public var initial: Duration
    /// No wait is longer than this, however many attempts failed.
    public var maximum: Duration

    public init(initial: Duration, maximum: Duration) {
        precondition(initial > .zero && maximum >= initial, "a backoff needs 0 < initial ≤ maximum")
        self.initial = initial
        self.maximum = maximum
    }

    /// The wait after `failures` failed attempts in a row: `initial` after the first, doubling, capped at `maximum`.
    /// Zero failures waits `initial` too.
    public func delay(afterFailures failures: Int) -> Duration {
        // 2^62 × any positive initial is past every cap, so the exponent never needs to go higher (nor overflow).
        let doublings = min(max(0, failures - 1), 62)
        // Compare before multiplying, so a huge doubling of a long initial cannot overflow a Duration.
        guard initial.timeInterval * Double(UInt64(1) << doublings) < maximum.timeInterval else { return maximum }
        return initial * Double(UInt64(1) << doublings)
    }

    /// ``delay(afterFailures:)`` scaled by `factor`: the caller's jitter (a random draw, or a value fixed per
    /// account so its retries don't line up with everyone else's).
    public func delay(afterFailures failures: Int, scaledBy factor: Double) -> Duration {
        delay(afterFailures: failures) * factor
    }
}
