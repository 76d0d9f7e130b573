import Synchronization
/// What the token may not see: repositories whose issues and pull requests GitHub refuses (SAML SSO, deleted, …)
/// and accounts whose token type `/notifications` refuses. Set by tests; nothing is refused by default.
struct AccessRules: Sendable {
    struct Refusal: Sendable {
        var status: Int
        var sso: Bool
    }

    /// By lower-cased `owner/name`.
    var repositories: [String: Refusal] = [:]
    /// Account indexes whose token is a GitHub App user, installation or fine-grained token.
    var notificationsRefused: Set<Int> = []
}

/// The kinds of token GitHub issues; only classic OAuth and classic personal tokens may read `/notifications`.
public enum SimulatedTokenKind: Sendable, Hashable {
    /// A classic OAuth app or personal access token: everything works.
    case classic
    /// A GitHub App user-to-server token (`ghu_`), an installation token (`ghs_`) or a fine-grained personal token
    /// (`github_pat_`): `/notifications` answers 403 "Resource not accessible by integration"; events still work.
    case githubAppOrFineGrained
}

extension GitHubSimulator {
    /// Makes the issues, pull requests and comments of `repo` answer `status` to every token: 403 with
    /// `X-GitHub-SSO: required; url=…` when `sso` (an organization that enforces SAML SSO, token not authorized),
    /// else 403, 404 or 410 with GitHub's error body. Notifications about them keep being listed.
    public func refuseSubjects(in repo: String, status: Int, sso: Bool = false) {
        access.withLock { $0.repositories[repo.lowercased()] = .init(status: status, sso: sso) }
    }

    /// Sets what kind of token `login` holds (the token string stays as it is).
    /// - Throws: `SimulatorError` for an unknown login.
    public func setTokenKind(_ kind: SimulatedTokenKind, for login: String) throws {
        let user = try accountIndex(login)
        access.withLock {
            if kind == .classic { $0.notificationsRefused.remove(user) } else { $0.notificationsRefused.insert(user) }
        }
    }

    /// The refusal for a subject or comment path of `repo`, if one is set.
    func refusal(repo fullName: String) -> APIResponse? {
        guard let rule = access.withLock({ $0.repositories[fullName.lowercased()] }) else { return nil }
        let owner = fullName.split(separator: "/").first.map(String.init) ?? fullName
        switch rule.status {
        case 403 where rule.sso:
            var response = APIResponse.error(
                403,
                "Resource protected by organization SAML enforcement. You must grant your OAuth token access to "
                    + "this organization.",
                docs:
                    "https://docs.github.com/articles/authenticating-to-a-github-organization-with-saml-single-sign-on")
            response.headers.append(
                ("X-GitHub-SSO", "required; url=https://github.com/orgs/\(owner)/sso?authorization_request=SIM"))
            return response
        case 410: return .error(410, "This issue was deleted")
        case 403: return .error(403, "Must have admin rights to Repository.")
        default: return .error(rule.status, "Not Found")
        }
    }

    func refusesNotifications(user: Int) -> Bool { access.withLock { $0.notificationsRefused.contains(user) } }
}
