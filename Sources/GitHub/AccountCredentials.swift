import Foundation

/// The token pair of one account during one sync, refreshed at most once.
///
/// Parallel requests that all see a 401 for the same token share one refresh; a refresh that fails, or a 401
/// for a token that was already refreshed, means the account needs a person to reconnect it.
actor AccountCredentials {
    private(set) var accessToken: String
    private(set) var refreshToken: String?
    /// Set once a refresh succeeded: the caller must save the new pair with this sync's output, because the
    /// refresh invalidated the old one.
    private(set) var refreshed = false
    private var refresh: Task<String?, Never>?

    init(accessToken: String, refreshToken: String?) {
        self.accessToken = accessToken
        self.refreshToken = refreshToken
    }

    /// The token to retry with after `failed` got a 401, or nil when there is none.
    func tokenAfterUnauthorized(failed: String, client: GitHubClient, deadline: Date) async -> String? {
        if failed != accessToken { return accessToken }  // another request already refreshed
        if let refresh {
            // A refresh is running: share its outcome. One that already produced `failed` cannot help again.
            let fresh = await refresh.value
            return fresh == failed ? nil : fresh
        }
        guard let refreshToken, !refreshToken.isEmpty else { return nil }
        let task = Task { () -> String? in
            do {
                let pair = try await client.refreshTokens(refreshToken: refreshToken, deadline: deadline)
                return self.adopt(pair)
            } catch {
                return nil
            }
        }
        refresh = task
        return await task.value
    }

    private func adopt(_ pair: (access: String, refresh: String?)) -> String {
        accessToken = pair.access
        if let newRefresh = pair.refresh { refreshToken = newRefresh }
        refreshed = true
        return pair.access
    }
}
