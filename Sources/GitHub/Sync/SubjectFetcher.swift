import Foundation
import Logging

/// A subject or comment URL to load for the notifications of one sync.
struct FetchJob: Sendable {
    var url: String
    var isComment: Bool
    /// A comment list (`…/issues/{n}/comments?since=…`): read as it is, never cached (its `since` varies).
    var isList = false
}

enum FetchResult: Sendable {
    case subject(IssueOrPull)
    case comment(GitHubComment)
    case comments([GitHubComment])
    /// Refused (outside the API origin): the item is skipped.
    case gone(refused: Bool)
    /// GitHub will not show it to this token (403, e.g. SAML SSO; 404; 410; other client errors): the item is
    /// emitted from what its notification says, marked as such.
    case unavailable(status: Int, sso: String?)
    /// Failed this time (5xx, network, bad body): the item is retried by the next sync.
    case failed
    /// Not requested because the sync stopped (rate limit, deadline, rejected token).
    case notAttempted
}

/// Loads subjects and comments with bounded parallelism, revalidating cached copies with `If-None-Match` so
/// an unchanged subject costs no quota.
struct SubjectFetcher: Sendable {
    let client: GitHubClient
    let credentials: AccountCredentials
    let deadline: Date
    let logger: Logger

    /// Results by URL, and the error that stopped the sync, if one did (later jobs are then not attempted).
    func fetch(_ jobs: [FetchJob], parallelism: Int) async -> ([String: FetchResult], GitHubError?) {
        var results: [String: FetchResult] = [:]
        var stop: GitHubError?
        await withTaskGroup(of: (String, FetchResult, GitHubError?).self) { group in
            var queue = jobs.makeIterator()
            func startNext(_ group: inout TaskGroup<(String, FetchResult, GitHubError?)>) -> Bool {
                guard let job = queue.next() else { return false }
                group.addTask { await self.load(job) }
                return true
            }
            for _ in 0..<max(1, parallelism) where !startNext(&group) { break }
            while let (url, result, error) = await group.next() {
                results[url] = result
                if let error, stop == nil { stop = error }
                if stop == nil { _ = startNext(&group) }
            }
        }
        for job in jobs where results[job.url] == nil { results[job.url] = .notAttempted }
        return (results, stop)
    }

    private func load(_ job: FetchJob) async -> (String, FetchResult, GitHubError?) {
        // GitHub's ETags differ per token: a validator is only worth sending with the token that received it.
        let key = client.subjectCacheKey(job.url, token: await credentials.accessToken)
        let cached = client.subjectCache.get(key)
        let conditional = cached.map { [("If-None-Match", $0.etag)] } ?? []
        do {
            if job.isList {
                let (value, response) = try await client.getJSON(
                    [GitHubComment].self, job.url, credentials: credentials, conditional: conditional,
                    deadline: deadline)
                if let value {
                    if let etag = response.etag {
                        client.subjectCache.put(key, .init(etag: etag, body: .comments(value)))
                    }
                    return (job.url, .comments(value), nil)
                }
            } else if job.isComment {
                let (value, response) = try await client.getJSON(
                    GitHubComment.self, job.url, credentials: credentials, conditional: conditional, deadline: deadline)
                if let value {
                    if let etag = response.etag {
                        client.subjectCache.put(key, .init(etag: etag, body: .comment(value)))
                    }
                    return (job.url, .comment(value), nil)
                }
            } else {
                let (value, response) = try await client.getJSON(
                    IssueOrPull.self, job.url, credentials: credentials, conditional: conditional, deadline: deadline)
                if let value {
                    if let etag = response.etag {
                        client.subjectCache.put(key, .init(etag: etag, body: .subject(value)))
                    }
                    return (job.url, .subject(value), nil)
                }
            }
            // 304: the cached copy is current.
            switch cached?.body {
            case .subject(let value): return (job.url, .subject(value), nil)
            case .comment(let value): return (job.url, .comment(value), nil)
            case .comments(let value): return (job.url, .comments(value), nil)
            case nil: return (job.url, .failed, nil)
            }
        } catch {
            if error.stopsSync { return (job.url, .notAttempted, error) }
            if case .refusedURL = error.code { return (job.url, .gone(refused: true), nil) }
            if let status = error.httpStatus, status < 500, status != 408, status != 409 {
                logger.info(
                    "subject unavailable; its notification is emitted from what it says itself",
                    metadata: ["url": "\(job.url)", "status": "\(status)", "sso": "\(error.ssoRequirement ?? "")"])
                return (job.url, .unavailable(status: status, sso: error.ssoRequirement), nil)
            }
            logger.info(
                "subject failed; its notification is retried next sync",
                metadata: ["url": "\(job.url)", "error": "\(error)"])
            return (job.url, .failed, nil)
        }
    }
}
