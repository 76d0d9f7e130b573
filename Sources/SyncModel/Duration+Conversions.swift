public import Foundation

/// Duration to the units the libraries and protocols around us count in, written once.
extension Duration {
    /// The duration in seconds, for `Date` arithmetic and rates.
    public var timeInterval: TimeInterval {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// Whole milliseconds, truncated toward zero (librdkafka and Kafka configs count in milliseconds).
    public var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }

    /// Whole nanoseconds, truncated toward zero (swift-metrics timers record nanoseconds).
    public var wholeNanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}
