import Foundation

/// The token pair of one account during one sync, refreshed at most once.
///
/// Parallel requests that all see a 401 for the same token share one refresh; a refresh that fails, or a 401
/// for a token that was already refreshed, means the account needs a person to reconnect it.
///
/// A new pair is stored (`save`) before any request uses it: the exchange invalidated the old pair, so a pair
/// that only this sync knows would be lost with the sync.
actor AccountCredentials {
    private(set) var accessToken: String
    private(set) var refreshToken: String?
    /// Set once a refresh succeeded: the caller must save the new pair with this sync's output, because the
    /// refresh invalidated the old one.
    private(set) var refreshed = false
    private var refresh: Task<Result<String?, GitHubError>, Never>?
    private let save: (@Sendable (_ accessToken: String, _ refreshToken: String?) async throws -> Void)?

    init(
        accessToken: String, refreshToken: String?,
        save: (@Sendable (_ accessToken: String, _ refreshToken: String?) async throws -> Void)? = nil
    ) {
        self.accessToken = accessToken
        self.refreshToken = refreshToken
        self.save = save
    }

    /// The token to retry with after `failed` got a 401, or nil when there is none.
    /// - Throws: `GitHubError` (`credentialsNotSaved`) when a new pair was obtained but could not be stored: the
    ///   sync stops rather than use it.
    func tokenAfterUnauthorized(failed: String, client: GitHubClient, deadline: Date) async throws(GitHubError)
        -> String?
    {
        if failed != accessToken { return accessToken }  // another request already refreshed
        if let refresh {
            // A refresh is running: share its outcome. One that already produced `failed` cannot help again.
            let fresh = try await refresh.value.get()
            return fresh == failed ? nil : fresh
        }
        guard let refreshToken, !refreshToken.isEmpty else { return nil }
        let save = self.save
        let task = Task { () -> Result<String?, GitHubError> in
            let pair: (access: String, refresh: String?)
            do {
                pair = try await client.refreshTokens(refreshToken: refreshToken, deadline: deadline)
            } catch {
                return .success(nil)
            }
            let token = self.adopt(pair)
            guard let save else { return .success(token) }
            do {
                try await save(pair.access, self.refreshToken)
            } catch {
                return .failure(GitHubError(.credentialsNotSaved("\(error)")))
            }
            return .success(token)
        }
        refresh = task
        return try await task.value.get()
    }

    private func adopt(_ pair: (access: String, refresh: String?)) -> String {
        accessToken = pair.access
        if let newRefresh = pair.refresh { refreshToken = newRefresh }
        refreshed = true
        return pair.access
    }
}
