import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// The GitHub REST endpoints the integration uses.
extension GitHubSimulator {
    func route(request: Request, user: Int, now: Int64) -> APIResponse {
        guard request.method == .get else { return .error(404, "Not Found") }
        let parts = request.uri.path.split(separator: "/").map { decodeComponent($0) }
        let query = parseQuery(request.uri.query)
        switch parts.count {
        case 1 where parts[0] == "user":
            return userResponse(login: nil, user: user, request: request)
        case 1 where parts[0] == "rate_limit":
            return rateLimitResponse(user: user, now: now)
        case 1 where parts[0] == "notifications":
            if refusesNotifications(user: user) {
                return .error(
                    403, "Resource not accessible by integration",
                    docs:
                        "https://docs.github.com/rest/activity/notifications#list-notifications-for-the-authenticated-user"
                )
            }
            return notifications(request: request, query: query, user: user, now: now)
        case 2 where parts[0] == "users":
            return userResponse(login: parts[1], user: user, request: request)
        case 3 where parts[0] == "users" && parts[2] == "events":
            return events(login: parts[1], request: request, query: query, now: now)
        case 3 where parts[0] == "notifications" && parts[1] == "threads":
            return thread(id: parts[2], user: user, now: now)
        case 5 where parts[0] == "repos" && (parts[3] == "issues" || parts[3] == "pulls"):
            if let refusal = refusal(repo: "\(parts[1])/\(parts[2])") { return refusal }
            return subject(
                repo: "\(parts[1])/\(parts[2])", number: parts[4], pull: parts[3] == "pulls", request: request, now: now
            )
        case 6 where parts[0] == "repos" && (parts[3] == "issues" || parts[3] == "pulls") && parts[5] == "comments":
            if let refusal = refusal(repo: "\(parts[1])/\(parts[2])") { return refusal }
            return commentList(
                repo: "\(parts[1])/\(parts[2])", number: parts[4], review: parts[3] == "pulls", query: query,
                request: request, now: now)
        case 6 where parts[0] == "repos" && (parts[3] == "issues" || parts[3] == "pulls") && parts[4] == "comments":
            if let refusal = refusal(repo: "\(parts[1])/\(parts[2])") { return refusal }
            return comment(
                repo: "\(parts[1])/\(parts[2])", id: parts[5], review: parts[3] == "pulls", request: request, now: now)
        default:
            return .error(404, "Not Found")
        }
    }

    /// A body with an ETag that, as on GitHub, differs per token: one token's validator never matches for another.
    private func cached(_ body: CachedBody, request: Request, extra: [(String, String)] = []) -> APIResponse {
        let etag = JSON.etag(body.etag + " " + (request.headers[.authorization] ?? ""))
        var headers = [("ETag", etag), ("Last-Modified", Timestamp.httpDate(body.lastModified))] + extra
        if ifNoneMatch(request.headers[.ifNoneMatch], matches: etag) {
            return .notModified(headers: headers)
        }
        headers.append(("Cache-Control", "private, max-age=60, s-maxage=60"))
        return .json(200, body.bytes, headers: headers)
    }

    private func userResponse(login: String?, user: Int, request: Request) -> APIResponse {
        let bytes: [UInt8]? = world.withLock { world in
            if let login {
                let known =
                    world.accountIndex(login: login) != nil || Vocabulary.collaborators.contains(login)
                    || world.repos.contains { $0.owner.login == login }
                guard known else { return nil }
                var person = world.person(login: login)
                if let repo = world.repos.first(where: { $0.owner.login == login }) { person = repo.owner }
                return JSON.encode(world.privateUserJSON(person, authenticated: false))
            }
            return JSON.encode(world.privateUserJSON(world.account(user).person, authenticated: true))
        }
        guard let bytes else { return .error(404, "Not Found") }
        return cached(CachedBody(bytes: bytes, etag: JSON.etag(bytes), lastModified: 1_767_225_600), request: request)
    }

    private func rateLimitResponse(user: Int, now: Int64) -> APIResponse {
        let quota = credentials.withLock { $0.quota(for: user, limit: configuration.quotaPerHour, now: now) }
        let core =
            "{\"limit\":\(quota.limit),\"used\":\(quota.used),"
            + "\"remaining\":\(quota.remaining),\"reset\":\(quota.reset)}"
        var response = APIResponse.json(200, Array("{\"resources\":{\"core\":\(core)},\"rate\":\(core)}".utf8))
        response.countsAgainstQuota = false  // as on GitHub
        return response
    }

    /// Rebuilds the request's query with another `page`, keeping everything else as the client sent it.
    private func pageURL(path: String, rawQuery: String?, page: Int) -> String {
        var pairs = (rawQuery ?? "").split(separator: "&").map(String.init).filter { !$0.hasPrefix("page=") }
        pairs.append("page=\(page)")
        let base = linkBase.withLock { $0 } ?? baseURL
        return "\(base)\(path)?\(pairs.joined(separator: "&"))"
    }

    private func linkHeader(path: String, rawQuery: String?, page: Int, lastPage: Int) -> (String, String)? {
        var links: [String] = []
        if page > 1 {
            links.append("<\(pageURL(path: path, rawQuery: rawQuery, page: min(page - 1, lastPage)))>; rel=\"prev\"")
        }
        if page < lastPage {
            links.append("<\(pageURL(path: path, rawQuery: rawQuery, page: page + 1))>; rel=\"next\"")
            links.append("<\(pageURL(path: path, rawQuery: rawQuery, page: lastPage))>; rel=\"last\"")
        }
        if page > 1 {
            links.append("<\(pageURL(path: path, rawQuery: rawQuery, page: 1))>; rel=\"first\"")
        }
        return links.isEmpty ? nil : ("Link", links.joined(separator: ", "))
    }

    private static func jsonArray(_ items: [[UInt8]]) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(items.reduce(2) { $0 + $1.count + 1 })
        buffer.writeInteger(UInt8(ascii: "["))
        for (index, item) in items.enumerated() {
            if index > 0 { buffer.writeInteger(UInt8(ascii: ",")) }
            buffer.writeBytes(item)
        }
        buffer.writeInteger(UInt8(ascii: "]"))
        return buffer
    }

    private func pagination(_ query: [String: String], defaultSize: Int, maxSize: Int) -> (perPage: Int, page: Int)? {
        var perPage = defaultSize
        var page = 1
        if let text = query["per_page"] {
            guard let value = Int(text) else { return nil }
            perPage = min(max(1, value), maxSize)
        }
        if let text = query["page"] {
            guard let value = Int(text) else { return nil }
            page = max(1, value)
        }
        return (perPage, page)
    }

    private func notifications(request: Request, query: [String: String], user: Int, now: Int64) -> APIResponse {
        var since: Int64?
        var before: Int64?
        if let text = query["since"] {
            guard let value = Timestamp.parseRFC3339(text) else {
                return .error(422, "Invalid request. \"\(text)\" is not a valid ISO 8601 timestamp for since.")
            }
            since = value
        }
        if let text = query["before"] {
            guard let value = Timestamp.parseRFC3339(text) else {
                return .error(422, "Invalid request. \"\(text)\" is not a valid ISO 8601 timestamp for before.")
            }
            before = value
        }
        guard let (perPage, page) = pagination(query, defaultSize: 50, maxSize: 50) else {
            return .error(422, "Invalid request. per_page and page must be integers.")
        }
        let ifModifiedSince = request.headers[.ifModifiedSince].flatMap(Timestamp.parseHTTPDate)

        enum Outcome {
            case notModified(Int64?)
            case page([[UInt8]], served: [String], total: Int, newest: Int64?)
        }
        let outcome: Outcome = world.withLock { world in
            world.materialize(user, now: now)
            let account = world.account(user)
            let order = account.threadOrder
            let visibleEnd = order.lowerBound(OrderKey(time: now + 1, id: Int64.min))
            let newest = world.listLastModified(user, now: now)
            world.recordListing(user, ListingRequest(time: Date().timeIntervalSince1970, before: before, since: since))
            if let ifModifiedSince, (newest ?? Int64.min) <= ifModifiedSince {
                return .notModified(newest)
            }
            let low = since.map { order.lowerBound(OrderKey(time: $0, id: Int64.min)) } ?? 0
            let high = min(visibleEnd, before.map { order.lowerBound(OrderKey(time: $0, id: Int64.min)) } ?? visibleEnd)
            let total = max(0, high - low)
            let top = high - (page - 1) * perPage
            let bottom = max(low, top - perPage)
            var items: [[UInt8]] = []
            var served: [String] = []
            if top > bottom {
                for index in stride(from: top - 1, through: bottom, by: -1) {
                    let id = order[index].id
                    guard var thread = account.threads[id] else { continue }
                    if !world.threadJSONIsStable(thread) {
                        items.append(JSON.encode(world.threadJSON(thread, now: now)))
                    } else {
                        if thread.cache == nil {
                            thread.cache = JSON.encode(world.threadJSON(thread))
                            account.threads[id] = thread
                        }
                        items.append(thread.cache ?? [])
                    }
                    served.append(WorldState.notificationActivityId(thread: id, updatedAt: thread.updatedAt))
                }
            }
            return .page(items, served: served, total: total, newest: newest)
        }
        var headers: [(String, String)] = [("X-Poll-Interval", "\(configuration.pollInterval)")]
        switch outcome {
        case .notModified(let newest):
            if let newest { headers.append(("Last-Modified", Timestamp.httpDate(newest))) }
            return .notModified(headers: headers)
        case .page(let items, let served, let total, let newest):
            if let newest { headers.append(("Last-Modified", Timestamp.httpDate(newest))) }
            let lastPage = max(1, (total + perPage - 1) / perPage)
            if let link = linkHeader(
                path: request.uri.path, rawQuery: request.uri.query, page: page, lastPage: lastPage)
            {
                headers.append(link)
            }
            var response = APIResponse(status: 200, body: Self.jsonArray(items), headers: headers)
            response.served = served
            return response
        }
    }

    private func thread(id text: String, user: Int, now: Int64) -> APIResponse {
        guard let id = Int64(text) else { return .error(404, "Not Found") }
        let bytes: [UInt8]? = world.withLock { world in
            if world.threadOwner[id] == nil { world.materializeOwner(seq: id - IdSpace.thread, now: now) }
            guard world.threadOwner[id] == user else { return nil }
            let account = world.account(user)
            guard var thread = account.threads[id], thread.updatedAt <= now else { return nil }
            if !world.threadJSONIsStable(thread) { return JSON.encode(world.threadJSON(thread, now: now)) }
            if thread.cache == nil {
                thread.cache = JSON.encode(world.threadJSON(thread))
                account.threads[id] = thread
            }
            return thread.cache
        }
        guard let bytes else { return .error(404, "Not Found") }
        return .json(200, bytes)
    }

    private func events(login: String, request: Request, query: [String: String], now: Int64) -> APIResponse {
        guard let (perPage, page) = pagination(query, defaultSize: 30, maxSize: 100) else {
            return .error(422, "Invalid request. per_page and page must be integers.")
        }
        let cap = world.withLock { $0.params.eventCap }
        let result: (items: [[UInt8]], ids: [Int64], total: Int)? = world.withLock { world in
            guard let user = world.accountIndex(login: login) else { return nil }
            world.materialize(user, now: now)
            let account = world.account(user)
            let order = account.eventOrder
            let visibleEnd = order.lowerBound(OrderKey(time: now + 1, id: Int64.min))
            world.recordEventPoll(user, at: Date().timeIntervalSince1970)
            // Newest first, only events past their visibility lag, at most `cap` of them and none older than the
            // retention (GitHub: 30 days).
            var visible: [Int64] = []
            var index = visibleEnd - 1
            let oldest = now - world.params.eventRetentionSeconds
            while index >= 0, visible.count < cap, order[index].time >= oldest {
                let id = order[index].id
                if let event = account.events[id], event.visibleAt <= now { visible.append(id) }
                index -= 1
            }
            let total = visible.count
            let first = (page - 1) * perPage
            var items: [[UInt8]] = []
            var ids: [Int64] = []
            for id in visible.dropFirst(first).prefix(perPage) {
                guard var event = account.events[id] else { continue }
                if event.cache == nil {
                    event.cache = JSON.encode(world.eventJSON(event))
                    account.events[id] = event
                }
                items.append(event.cache ?? [])
                ids.append(id)
            }
            return (items, ids, total)
        }
        guard let result else { return .error(404, "Not Found") }
        let lastPage = max(1, (result.total + perPage - 1) / perPage)
        let etag = JSON.etag(
            "events:\(login):\(perPage):\(page):\(lastPage):" + result.ids.map(String.init).joined(separator: ",")
                + " " + (request.headers[.authorization] ?? ""))
        var headers: [(String, String)] = [("ETag", etag), ("X-Poll-Interval", "\(configuration.pollInterval)")]
        if let link = linkHeader(path: request.uri.path, rawQuery: request.uri.query, page: page, lastPage: lastPage) {
            headers.append(link)
        }
        if ifNoneMatch(request.headers[.ifNoneMatch], matches: etag) {
            return .notModified(headers: headers)
        }
        var response = APIResponse(status: 200, body: Self.jsonArray(result.items), headers: headers)
        response.served = result.ids.map(WorldState.eventActivityId)
        return response
    }

    private func subject(repo fullName: String, number text: String, pull: Bool, request: Request, now: Int64)
        -> APIResponse
    {
        guard let number = Int(text) else { return .error(404, "Not Found") }
        let body: CachedBody? = world.withLock { world in
            guard let repo = world.repoByName[fullName.lowercased()] else { return nil }
            let key = SubjectKey(repo: repo, number: number)
            if world.subjects[key] == nil { world.materializeOwner(ofNumber: number, repo: repo, now: now) }
            guard var subject = world.subjects[key], subject.createdAt <= now else { return nil }
            if pull {
                guard subject.isPullRequest else { return nil }
                if subject.pullCache == nil {
                    let bytes = JSON.encode(world.pullJSON(subject))
                    subject.pullCache = CachedBody(
                        bytes: bytes, etag: JSON.etag(bytes), lastModified: subject.updatedAt)
                    world.subjects[key] = subject
                }
                return subject.pullCache
            }
            if subject.issueCache == nil {
                let bytes = JSON.encode(world.issueJSON(subject))
                subject.issueCache = CachedBody(bytes: bytes, etag: JSON.etag(bytes), lastModified: subject.updatedAt)
                world.subjects[key] = subject
            }
            return subject.issueCache
        }
        guard let body else { return .error(404, "Not Found") }
        return cached(body, request: request)
    }

    /// `GET /repos/{o}/{r}/issues/{n}/comments` (issue comments) and `/pulls/{n}/comments` (review comments): oldest
    /// first, `since` keeps those updated at or after it (a comment's `updated_at` is its `created_at` here), at most
    /// `per_page` (≤ 100) of them, first page only.
    private func commentList(
        repo fullName: String, number text: String, review: Bool, query: [String: String], request: Request, now: Int64
    ) -> APIResponse {
        guard let number = Int(text) else { return .error(404, "Not Found") }
        var since: Int64 = .min
        if let value = query["since"] {
            guard let parsed = Timestamp.parseRFC3339(value) else {
                return .error(422, "Invalid request. \"\(value)\" is not a valid ISO 8601 timestamp for since.")
            }
            since = parsed
        }
        let perPage = min(max(1, query["per_page"].flatMap { Int($0) } ?? 30), 100)
        let items: [[UInt8]]? = world.withLock { world in
            guard let repo = world.repoByName[fullName.lowercased()] else { return nil }
            let key = SubjectKey(repo: repo, number: number)
            if world.subjects[key] == nil { world.materializeOwner(ofNumber: number, repo: repo, now: now) }
            guard let subject = world.subjects[key], subject.createdAt <= now, !review || subject.isPullRequest else {
                return nil
            }
            let listed = subject.commentIds.compactMap { world.comments[$0] }.filter {
                $0.isReview == review && $0.createdAt >= since && $0.createdAt <= now
            }
            return listed.prefix(perPage).map {
                review ? JSON.encode(world.reviewCommentJSON($0)) : JSON.encode(world.issueCommentJSON($0))
            }
        }
        guard let items else { return .error(404, "Not Found") }
        let bytes = Array("[".utf8) + Array(items.joined(separator: Array(",".utf8))) + Array("]".utf8)
        return cached(CachedBody(bytes: bytes, etag: JSON.etag(bytes), lastModified: now), request: request)
    }

    private func comment(repo fullName: String, id text: String, review: Bool, request: Request, now: Int64)
        -> APIResponse
    {
        guard let id = Int64(text) else { return .error(404, "Not Found") }
        let body: CachedBody? = world.withLock { world in
            guard let repo = world.repoByName[fullName.lowercased()] else { return nil }
            if world.comments[id] == nil { world.materializeOwner(seq: id - IdSpace.comment, now: now) }
            guard var comment = world.comments[id], comment.isReview == review, comment.subject.repo == repo,
                comment.createdAt <= now
            else { return nil }
            if comment.cache == nil {
                let bytes =
                    review
                    ? JSON.encode(world.reviewCommentJSON(comment)) : JSON.encode(world.issueCommentJSON(comment))
                comment.cache = CachedBody(bytes: bytes, etag: JSON.etag(bytes), lastModified: comment.createdAt)
                world.comments[id] = comment
            }
            return comment.cache
        }
        guard let body else { return .error(404, "Not Found") }
        return cached(body, request: request)
    }
}
