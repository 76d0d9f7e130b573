import Foundation
import SyncModel

/// The recorded GitHub payloads in `shared/fixtures/github`, found from this file's location: `shared/` sits
/// beside the clone (CI) or beside a parent of the worktree (development).
enum Fixtures {
    static let directory: URL = {
        var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()  // Tests/GitHubTests
        for _ in 0..<6 {
            url = url.deletingLastPathComponent()
            let candidate = url.appendingPathComponent("shared/fixtures/github")
            if FileManager.default.fileExists(atPath: candidate.path) { return candidate }
        }
        return URL(fileURLWithPath: "/nonexistent/shared/fixtures/github")
    }()

    static func data(_ name: String) throws -> Data {
        try Data(contentsOf: directory.appendingPathComponent(name))
    }

    static func json(_ name: String) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: data(name))
    }

    static func decode<T: Decodable>(_ type: T.Type, _ name: String) throws -> T {
        try JSONDecoder().decode(T.self, from: data(name))
    }

    static func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        try JSONDecoder().decode(T.self, from: JSONEncoder().encode(value))
    }

    /// One exchange of an octokit recorded scenario.
    struct Exchange {
        var method: String
        var path: String
        var status: Int
        var response: JSONValue
        /// Header values as text: recordings hold numbers for some (`x-ratelimit-used: 1`).
        var headers: [String: String]
    }

    static func exchanges(_ name: String) throws -> [Exchange] {
        guard case .array(let entries) = try json(name) else { return [] }
        return entries.map { entry in
            var headers: [String: String] = [:]
            for (key, value) in entry["headers"]?.objectValue ?? [:] {
                switch value {
                case .string(let text): headers[key.lowercased()] = text
                case .number(let number):
                    headers[key.lowercased()] = number.rounded() == number ? String(Int64(number)) : String(number)
                case .bool(let flag): headers[key.lowercased()] = String(flag)
                case .array(let items):
                    headers[key.lowercased()] = items.compactMap(\.stringValue).joined(separator: ", ")
                default: break
                }
            }
            return Exchange(
                method: entry["method"]?.stringValue ?? "", path: entry["path"]?.stringValue ?? "",
                status: entry["status"]?.intValue ?? 0, response: entry["response"] ?? .null, headers: headers)
        }
    }
}

extension JSONValue {
    /// The same value without `key` at the top level (and in every array element), to prove it is optional.
    func removing(_ key: String) -> JSONValue {
        switch self {
        case .object(var object):
            object[key] = nil
            return .object(object)
        case .array(let items): return .array(items.map { $0.removing(key) })
        default: return self
        }
    }
}
