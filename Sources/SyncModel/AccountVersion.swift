/// Which version of an account's record something was decided on: a 64-bit FNV-1a hash of the record's value
/// bytes exactly as they are on the accounts topic.
///
/// A worker that finds an account's token rejected writes the version it ran with into the status record
/// (`accountVersion`); a scheduler fires no job for the account while its record is still that version. Every
/// rewrite of the record — a reconnect, `accounts resume`, `pause`, a changed schedule — carries a new
/// `updatedAt` (and a reconnect a freshly sealed config), so its bytes and its version differ and jobs fire again.
/// It is computed from the bytes as stored, so readers agree on it whichever producer wrote the record, and the
/// scheduler, which never decodes the sealed config, gets it without parsing. The bytes hold the config sealed
/// only: the hash says nothing about a secret.
public struct AccountVersion: Sendable, Hashable, CustomStringConvertible {
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// The version of the record whose value on the accounts topic is `bytes`; `@inlinable` for the reason
    /// ``StableHash/fnv1a(_:)`` is.
    @inlinable
    public init(recordBytes bytes: some Sequence<UInt8>) {
        rawValue = StableHash.fnv1a(bytes)
    }

    /// Parses the 16 lowercase hex digits ``description`` writes; nil for anything else.
    public init?(_ text: String) {
        guard text.utf8.count == 16, text.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }),
            let value = UInt64(text, radix: 16)
        else { return nil }
        rawValue = value
    }

    /// 16 lowercase hex digits, as in the status record's `accountVersion`.
    public var description: String {
        let digits = String(rawValue, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
