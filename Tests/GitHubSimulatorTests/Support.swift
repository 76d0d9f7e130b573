import ActivitySyncTesting
import AsyncHTTPClient
import Foundation
import GitHubSimulator
import NIOCore
import NIOHTTP1

/// One HTTP exchange with the simulator, decoded enough for assertions.
struct HTTPResult {
    var status: Int
    var headers: HTTPHeaders
    var body: [UInt8]

    func header(_ name: String) -> String? { headers.first(name: name) }

    var text: String { String(decoding: body, as: UTF8.self) }

    var jsonArray: [[String: Any]]? { (try? JSONSerialization.jsonObject(with: Data(body))) as? [[String: Any]] }

    var jsonObject: [String: Any]? { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] }

    /// `rel` → absolute URL, from the `Link` header.
    var links: [String: String] {
        guard let link = header("Link") else { return [:] }
        var result: [String: String] = [:]
        for part in link.split(separator: ",") {
            let pieces = part.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard pieces.count == 2, pieces[0].hasPrefix("<"), pieces[0].hasSuffix(">") else { continue }
            let url = String(pieces[0].dropFirst().dropLast())
            let rel = pieces[1].replacingOccurrences(of: "rel=", with: "").replacingOccurrences(of: "\"", with: "")
            result[rel] = url
        }
        return result
    }
}

func send(
    _ url: String, method: HTTPMethod = .GET, token: String? = nil, headers: [(String, String)] = [],
    body: String? = nil
) async throws -> HTTPResult {
    var request = HTTPClientRequest(url: url)
    request.method = method
    if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
    request.headers.add(name: "Accept", value: "application/vnd.github+json")
    for (name, value) in headers { request.headers.replaceOrAdd(name: name, value: value) }
    if let body { request.body = .bytes(ByteBuffer(string: body)) }
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(20))
    let buffer = try await response.body.collect(upTo: 32 << 20)
    return HTTPResult(status: Int(response.status.code), headers: response.headers, body: Array(buffer: buffer))
}

/// Follows `rel="next"` from `url` and returns every page.
func walkPages(_ url: String, token: String, maxPages: Int = 100) async throws -> [HTTPResult] {
    var pages: [HTTPResult] = []
    var next: String? = url
    while let current = next, pages.count < maxPages {
        let page = try await send(current, token: token)
        pages.append(page)
        next = page.links["next"]
    }
    return pages
}
