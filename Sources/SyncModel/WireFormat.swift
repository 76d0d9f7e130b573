public import Foundation

/// The JSON conventions of every record on our topics.
///
/// Dates are RFC 3339 in UTC (`2026-12-01T04:05:00Z`, with milliseconds only when they are not zero), keys are
/// sorted so that the same record always has the same bytes — which keeps deterministic ids and byte-level
/// tests honest.
public enum WireFormat {
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(formatDate(date))
        }
        return encoder
    }

    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = parseDate(text) else {
                throw DecodingError.dataCorruptedError(
                    in: container,
                    debugDescription: "expected an RFC 3339 date such as 2026-12-01T04:05:00Z, got \(text)")
            }
            return date
        }
        return decoder
    }

    /// Formats a date as RFC 3339 UTC; milliseconds appear only when non-zero.
    public static func formatDate(_ date: Date) -> String {
        let millis = (date.timeIntervalSince1970 * 1000).rounded()
        let seconds = (millis / 1000).rounded(.down)
        let whole = Date(timeIntervalSince1970: seconds).formatted(
            .iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: false)
                .timeSeparator(.colon).timeZone(separator: .omitted)
        ).replacingOccurrences(of: "+0000", with: "Z")
        let fraction = Int(millis - seconds * 1000)
        guard fraction != 0 else { return whole }
        // The milliseconds are written from the rounded integer: formatting the fractional `Date` itself
        // truncates, and 04:05:00.001 (a double just below it) came out as 04:05:00.000.
        let digits = String(fraction)
        return whole.dropLast() + "." + String(repeating: "0", count: 3 - digits.count) + digits + "Z"
    }

    /// Parses RFC 3339 with or without fractional seconds, `Z` or a numeric offset.
    public static func parseDate(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: .iso8601) { return date }
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) {
            return date
        }
        return nil
    }

    public static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        Array(try encoder().encode(value))
    }

    public static func decode<T: Decodable>(_ type: T.Type, from bytes: some Collection<UInt8>) throws -> T {
        try decoder().decode(T.self, from: Data(bytes))
    }
}
