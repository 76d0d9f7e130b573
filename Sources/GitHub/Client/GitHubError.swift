public import Foundation

/// Why a GitHub request or sync step failed, with what to do about it.
///
/// One error type for the module: a struct around a private code, so new cases don't break callers. The sync
/// turns most of these into a `SyncOutcome.status` instead of throwing them out of the integration.
public struct GitHubError: Error, CustomStringConvertible, Sendable {
    enum Code: Sendable, Equatable {
        /// The token was rejected (401).
        case unauthorized
        /// Waiting for the rate limit (or a secondary limit) would pass the deadline.
        case rateLimited(until: Date)
        /// The sync's deadline came before the request could finish.
        case deadlineExceeded
        /// A URL from a response points outside the configured API origin; it was not requested.
        case refusedURL(String)
        /// GitHub answered with a status we don't retry (404, 410, 422, …).
        case http(status: Int)
        /// 5xx or a network error, still failing after the bounded retries.
        case unavailable(String)
        /// The response body was not the JSON we expected.
        case malformed(String)
        /// The account config lacks the access token.
        case invalidConfig(String)
        /// A refreshed token pair could not be stored before use; the sync stops without using it.
        case credentialsNotSaved(String)
    }

    let code: Code
    /// `X-GitHub-SSO` of a 403: the organisation enforces SAML SSO and the token is not authorized for it
    /// (`required; url=…` says where a person authorizes it).
    var ssoRequirement: String?
    /// The `message` of GitHub's error body, when it sent one.
    var serverMessage: String?

    init(_ code: Code, ssoRequirement: String? = nil, serverMessage: String? = nil) {
        self.code = code
        self.ssoRequirement = ssoRequirement
        self.serverMessage = serverMessage
    }

    /// The HTTP status when GitHub answered with one we don't retry.
    public var httpStatus: Int? {
        if case .http(let status) = code { return status }
        return nil
    }

    /// True when the token was rejected and a person must reconnect the account (or the refresh failed).
    public var isUnauthorized: Bool { code == .unauthorized }

    /// When a later attempt may succeed, if GitHub told us.
    public var retryAfter: Date? {
        if case .rateLimited(let until) = code { return until }
        return nil
    }

    /// True for failures a later attempt of the same request may not see.
    public var isTransient: Bool {
        switch code {
        case .unavailable, .malformed, .rateLimited, .deadlineExceeded, .credentialsNotSaved: true
        case .http(let status): status == 408 || status == 409 || status >= 500
        case .unauthorized, .refusedURL, .invalidConfig: false
        }
    }

    /// True when nothing else should be requested in this sync: the token is rejected, the quota is spent
    /// until after the deadline, or the deadline passed. Other failures only affect their own item or page.
    var stopsSync: Bool {
        switch code {
        case .unauthorized, .rateLimited, .deadlineExceeded, .credentialsNotSaved: true
        default: false
        }
    }

    public var description: String {
        switch code {
        case .unauthorized:
            "GitHub rejected the access token (401): reconnect the account or provide a refresh_token"
        case .rateLimited(let until):
            "GitHub rate limit: next request allowed at \(until); retry after that"
        case .deadlineExceeded:
            "the sync deadline passed before GitHub answered; the next sync continues from the saved state"
        case .refusedURL(let url):
            "refused to send the token to \(url): not the configured GitHub API origin"
        case .http(let status):
            "GitHub answered HTTP \(status); the item is skipped"
        case .unavailable(let reason):
            "GitHub unavailable after retries (\(reason)); the next sync retries"
        case .malformed(let reason):
            "GitHub sent a body that could not be decoded (\(reason)); the next sync retries"
        case .invalidConfig(let reason):
            "invalid GitHub account config: \(reason)"
        case .credentialsNotSaved(let reason):
            "the token pair was refreshed but could not be stored before use (\(reason)); the sync stopped, and the "
                + "new pair is written with its output"
        }
    }
}
