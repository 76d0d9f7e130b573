import Foundation
import Synchronization

/// A bounded, process-wide LRU cache of subject objects (issues, pull requests, comments) by API URL and token.
///
/// Holding the ETag and the decoded body lets a sync revalidate with `If-None-Match`: GitHub answers 304, which
/// costs no quota, and the cached body is used. GitHub's ETags differ per token, so entries are kept per token
/// (``GitHubClient/subjectCacheKey(_:token:)``): keyed by URL alone, two accounts that share a subject would keep
/// replacing each other's validator and each pay a full request where a 304 was due. Every use revalidates with the
/// account's own token (a token without access gets 404, not 304).
final class SubjectCache: Sendable {
    enum Body: Sendable, Hashable {
        case subject(IssueOrPull)
        case comment(GitHubComment)
        case comments([GitHubComment])
    }

    struct Entry: Sendable, Hashable {
        var etag: String
        var body: Body
    }

    private struct State {
        var entries: [String: (entry: Entry, tick: UInt64)] = [:]
        var tick: UInt64 = 0
    }

    let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) { self.capacity = max(1, capacity) }

    func get(_ url: String) -> Entry? {
        state.withLock { state in
            guard let found = state.entries[url] else { return nil }
            state.tick += 1
            state.entries[url] = (found.entry, state.tick)
            return found.entry
        }
    }

    func put(_ url: String, _ entry: Entry) {
        state.withLock { state in
            state.tick += 1
            state.entries[url] = (entry, state.tick)
            guard state.entries.count > capacity else { return }
            // Evict the least recently used tenth at once so eviction stays amortised O(1) per insert.
            let excess = state.entries.count - capacity + max(1, capacity / 10)
            let oldest = state.entries.sorted { $0.value.tick < $1.value.tick }.prefix(excess).map(\.key)
            for key in oldest { state.entries[key] = nil }
        }
    }

    var count: Int { state.withLock { $0.entries.count } }
}
