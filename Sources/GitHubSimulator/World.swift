import Foundation

/// Someone who can appear as an author or actor: a simulated account, a collaborator or an organization.
struct Person: Hashable, Sendable {
    var login: String
    var id: Int
    var isOrganization = false
}

struct Repo: Sendable {
    var index: Int
    var id: Int
    var owner: Person
    var name: String
    /// Generated repositories decode the author of an issue number; repositories created by tests do not.
    var generated: Bool
    var nextTestNumber = 1
    var fullName: String { "\(owner.login)/\(name)" }
}

struct SubjectKey: Hashable, Sendable {
    var repo: Int
    var number: Int
}

/// An encoded response body with its validators, so a popular object is encoded once, not once per request.
struct CachedBody: Sendable {
    var bytes: [UInt8]
    var etag: String
    var lastModified: Int64
}

/// An issue or a pull request.
struct Subject: Sendable {
    var key: SubjectKey
    var seq: Int64
    var isPullRequest: Bool
    var title: String
    var body: String
    var author: Person
    var state: String
    var merged: Bool
    var createdAt: Int64
    var updatedAt: Int64
    var closedAt: Int64?
    /// Who closed (or merged) it: GitHub's `closed_by` on the issue, `merged_by` on a merged pull request.
    var closedBy: Person?
    var comments = 0
    var reviewComments = 0
    /// Its comments (issue and review), oldest first.
    var commentIds: [Int64] = []
    var issueCache: CachedBody?
    var pullCache: CachedBody?

    var snapshot: Subject {
        var copy = self
        copy.issueCache = nil
        copy.pullCache = nil
        return copy
    }
}

struct Comment: Sendable {
    var id: Int64
    var isReview: Bool
    var subject: SubjectKey
    var author: Person
    var body: String
    var createdAt: Int64
    var cache: CachedBody?
}

enum LatestComment: Sendable, Equatable {
    /// `latest_comment_url` is null.
    case none
    /// `latest_comment_url` equals the subject URL (GitHub does this when the issue itself is the news).
    case subject
    case comment(Int64)
}

struct NotificationThread: Sendable {
    var id: Int64
    var user: Int
    var reason: String
    var subjectType: String
    var subject: SubjectKey?
    /// The discussion a `Discussion` thread is about (its `subject.url` is null, as on GitHub).
    var discussion: SubjectKey?
    var repo: Int
    var title: String
    /// For a `Discussion` thread, `.comment` names a discussion comment.
    var latest: LatestComment
    var releaseId: Int64?
    /// The commit a `Commit` thread is about.
    var commitSHA: String?
    var updatedAt: Int64
    /// When this version became the one the listing shows (epoch seconds, fractional): its `updated_at`, or the
    /// moment a test changed it when that is later.
    var currentFrom: Double
    /// Earlier versions of this thread, oldest first: GitHub shows only the current one.
    var previous: [ThreadVersion] = []
    /// Set by tests: subject and comment URLs then name this host instead of the simulator.
    var foreignHost: String?
    var cache: [UInt8]?
    /// What made the current version when `reason` does not say it: GitHub keeps a thread's reason (`assign`,
    /// `mention`, …) while later bumps have other causes, so a plain comment on an assigned issue is listed with
    /// reason `assign`. `comment` then; nil when the reason is the cause.
    var cause: String?
}

/// A superseded version of a notification thread: what the listing showed between `currentFrom` and
/// `supersededAt`.
struct ThreadVersion: Sendable {
    var updatedAt: Int64
    var reason: String
    var latest: LatestComment
    var currentFrom: Double
    var supersededAt: Double
    /// See `NotificationThread.cause`.
    var cause: String? = nil
}

extension NotificationThread {
    /// Every version of the thread, oldest first: the superseded ones, then the current one (never superseded).
    var versions: [ThreadVersion] {
        previous + [
            ThreadVersion(
                updatedAt: updatedAt, reason: reason, latest: latest, currentFrom: currentFrom,
                supersededAt: .infinity, cause: cause)
        ]
    }
}

/// A GitHub Discussion: no REST subject, reachable through GraphQL `repository.discussions`.
struct Discussion: Sendable {
    var key: SubjectKey
    var title: String
    var body: String
    var author: Person
    var createdAt: Int64
    var updatedAt: Int64
    var comments: [Int64] = []
}

struct DiscussionComment: Sendable {
    var id: Int64
    var discussion: SubjectKey
    var author: Person
    var body: String
    var createdAt: Int64
}

/// One request that listed notifications (served, or answered 304): the "polls" the ground truth counts.
struct ListingRequest: Sendable {
    /// Epoch seconds, fractional, taken with the world lock held.
    var time: Double
    /// The `before` the client sent (exclusive), if any.
    var before: Int64?
    /// The `since` the client sent, if any: how far back a client can look for what happened between two versions.
    var since: Int64? = nil
}

/// A pull request review the user submitted.
struct Review: Sendable {
    var id: Int64
    /// `approved`, `commented`, `changes_requested`.
    var state: String
    var body: String
}

struct UserEvent: Sendable {
    var id: Int64
    var user: Int
    var type: String
    var action: String?
    var repo: Int
    /// The issue or pull request as it was when the event happened.
    var subject: Subject?
    var comment: Comment?
    /// The review a `PullRequestReviewEvent` submitted.
    var review: Review?
    /// The discussion a `DiscussionEvent` opened.
    var discussion: SubjectKey?
    var createdAt: Int64
    /// When the event shows up in `/users/{u}/events`: GitHub documents 30 s to 6 h after `created_at`.
    var visibleAt: Int64
    var cache: [UInt8]?
}

/// Sort key for a user's threads and events: time, then id, both ascending.
struct OrderKey: Comparable, Sendable {
    var time: Int64
    var id: Int64

    static func < (lhs: OrderKey, rhs: OrderKey) -> Bool {
        lhs.time != rhs.time ? lhs.time < rhs.time : lhs.id < rhs.id
    }
}

extension Array where Element: Comparable {
    /// First index whose element is not less than `value`.
    func lowerBound(_ value: Element) -> Int {
        var low = 0
        var high = count
        while low < high {
            let mid = (low + high) / 2
            if self[mid] < value { low = mid + 1 } else { high = mid }
        }
        return low
    }

    mutating func insertSorted(_ value: Element) {
        if let last, !(value < last) {
            append(value)
        } else {
            insert(value, at: lowerBound(value))
        }
    }
}

/// One simulated account's part of the world. Only touched with the world lock held.
final class Account {
    let index: Int
    let person: Person
    let repos: [Int]
    var threads: [Int64: NotificationThread] = [:]
    var threadOrder: [OrderKey] = []
    var events: [Int64: UserEvent] = [:]
    var eventOrder: [OrderKey] = []
    /// Index of the next generated item; items are produced in time order, lazily, up to "now".
    var nextItem = 0
    var historyTimes: [Int64]?
    var liveClock: Double
    var nextLiveTime: Int64?
    /// Issues and pull requests this account is involved in, for follow-up notifications and comments.
    var watched: [SubjectKey] = []
    var own: [SubjectKey] = []
    /// When a test last changed an already visible thread (added one with a past `updated_at`, touched or
    /// re-hosted one): the notifications list changed then even if no `updated_at` is newer, so
    /// `If-Modified-Since` must not answer 304 for it.
    var listChangedAt: Int64 = .min
    /// The one thread per subject (issue, pull request or discussion) GitHub keeps for this user.
    var threadBySubject: [String: Int64] = [:]
    var watchedDiscussions: [SubjectKey] = []
    /// Notification listings and events reads of this account, oldest first, for the "seen by a poll" truth.
    var listings: [ListingRequest] = []
    var eventPolls: [Double] = []
    /// Activity ids of the thread versions and events that 200 pages actually delivered to this account, with the
    /// first time each was: a client that was handed one must emit it.
    var served: [String: Double] = [:]

    init(index: Int, person: Person, repos: [Int], start: Int64) {
        self.index = index
        self.person = person
        self.repos = repos
        self.liveClock = Double(start)
    }
}

/// Numbers that make ids of generated things decodable back to the account that owns them, so a request for
/// `/repos/o/r/issues/1234` can generate just that account's history instead of everyone's.
enum IdSpace {
    static let thread: Int64 = 4_000_000_000
    static let event: Int64 = 30_000_000_000
    static let comment: Int64 = 1_000_000_000
    static let issue: Int64 = 2_000_000_000
    static let pull: Int64 = 3_000_000_000
    static let review: Int64 = 5_000_000_000
    static let release: Int64 = 500_000
    /// Test-made things take sequence numbers from here on; they are never decoded.
    static let testSeq: Int64 = 500_000_000_000
    /// Test-made issue numbers in generated repositories.
    static let testNumber = 900_000_000
}

struct WorldParameters: Sendable {
    var seed: UInt64
    var users: Int
    var start: Int64
    var historySeconds: Int64
    var historyItems: Int
    var intervalSeconds: Double
    var eventCap: Int
    var eventRetentionSeconds: Int64
    var htmlBase: String
    var threadBumps: Bool
    var eventLagSeconds: Double
    var fullEventPayloads: Bool

    init(_ configuration: SimulatorConfiguration) {
        fullEventPayloads = configuration.fullEventPayloads
        seed = configuration.seed
        users = max(1, configuration.users)
        start = Timestamp.seconds(configuration.start)
        historySeconds = Int64(max(0, configuration.historyHours)) * 3_600
        historyItems = max(0, configuration.historyItems)
        let interval = configuration.activityInterval.components
        let seconds = Double(interval.seconds) + Double(interval.attoseconds) / 1e18
        // A zero interval would mean infinitely many items; 50 ms is already far more than any test wants.
        intervalSeconds = max(0.05, seconds)
        eventCap = max(1, configuration.eventCap)
        eventRetentionSeconds = max(1, configuration.eventRetention.components.seconds)
        threadBumps = configuration.threadBumps
        let lag = configuration.eventLag.components
        eventLagSeconds = max(0, Double(lag.seconds) + Double(lag.attoseconds) / 1e18)
        htmlBase =
            configuration.htmlBaseURL.hasSuffix("/")
            ? String(configuration.htmlBaseURL.dropLast()) : configuration.htmlBaseURL
    }
}

/// The whole simulated GitHub: repositories, issues, comments, notification threads and events.
///
/// Kept behind one lock (see `GitHubSimulator`): every critical section is short (binary searches, slicing,
/// encoding an object once), so a single lock comfortably serves thousands of requests per second.
struct WorldState {
    let params: WorldParameters
    var baseURL = "http://127.0.0.1"
    var repos: [Repo] = []
    /// Repositories made from the seed; tests may add more, which must not change what the seed generates.
    var generatedRepoCount = 0
    var repoByName: [String: Int] = [:]
    var accounts: [Account] = []
    var accountByLogin: [String: Int] = [:]
    var subjects: [SubjectKey: Subject] = [:]
    var comments: [Int64: Comment] = [:]
    var discussions: [SubjectKey: Discussion] = [:]
    var discussionComments: [Int64: DiscussionComment] = [:]
    var threadOwner: [Int64: Int] = [:]
    var nextTestSeq = IdSpace.testSeq

    init(params: WorldParameters) {
        self.params = params
        let repoCount = max(6, min(200, params.users))
        generatedRepoCount = repoCount
        for index in 0..<repoCount {
            var rng = SeededGenerator(params.seed, UInt64(index), 0x5EB0)
            let orgIndex = Int(rng.next() % UInt64(Vocabulary.organizations.count))
            let owner = Person(
                login: Vocabulary.organizations[orgIndex], id: 7_000_000 + orgIndex, isOrganization: true)
            let name = "\(Vocabulary.projects[index % Vocabulary.projects.count])-\(index)"
            let repo = Repo(index: index, id: 700_000 + index, owner: owner, name: name, generated: true)
            repos.append(repo)
            repoByName[repo.fullName.lowercased()] = index
        }
        for user in 1...params.users {
            var rng = SeededGenerator(params.seed, UInt64(user), 0xACC7)
            var mine: [Int] = []
            while mine.count < min(3, repoCount) {
                let candidate = Int(rng.next() % UInt64(repoCount))
                if !mine.contains(candidate) { mine.append(candidate) }
            }
            let person = Person(login: "user\(user)", id: Self.userId(user, seed: params.seed))
            accounts.append(Account(index: user, person: person, repos: mine, start: params.start))
            accountByLogin[person.login] = user
        }
    }

    /// Account ids depend on the seed, so runs with different seeds never share accounts (and their state) in a
    /// long-lived Kafka cluster. Room for 100,000 users per seed.
    static func userId(_ user: Int, seed: UInt64) -> Int {
        100_000_000 + Int(SeededGenerator.mix(seed) % 9_000) * 100_000 + user
    }

    func account(_ user: Int) -> Account { accounts[user - 1] }

    func accountIndex(login: String) -> Int? { accountByLogin[login.lowercased()] }

    /// The person behind a login: a simulated account, a collaborator, or anyone a test names.
    func person(login: String) -> Person {
        if let user = accountIndex(login: login) { return account(user).person }
        if let index = Vocabulary.collaborators.firstIndex(of: login) {
            return Person(login: login, id: 6_000_000 + index)
        }
        var hash: UInt64 = 1_469_598_103_934_665_603
        for byte in login.utf8 { hash = (hash ^ UInt64(byte)) &* 1_099_511_628_211 }
        return Person(login: login, id: 8_000_000 + Int(hash % 1_000_000))
    }

    // MARK: Lazy generation

    /// Generates every item of `user` whose time has come. Cheap when nothing is due.
    mutating func materialize(_ user: Int, now: Int64) {
        let account = account(user)
        if account.historyTimes == nil { account.historyTimes = historyTimes(user) }
        let history = account.historyTimes ?? []
        while true {
            let time: Int64
            let isLive = account.nextItem >= history.count
            if isLive {
                if account.nextLiveTime == nil {
                    var rng = SeededGenerator(params.seed, UInt64(user), UInt64(account.nextItem), 0x6A9)
                    account.liveClock += params.intervalSeconds * (0.5 + rng.unit())
                    account.nextLiveTime = Int64(account.liveClock.rounded(.down))
                }
                time = account.nextLiveTime ?? 0
            } else {
                time = history[account.nextItem]
            }
            if time > now { return }
            generate(user: user, item: account.nextItem, at: time)
            account.nextItem += 1
            if isLive { account.nextLiveTime = nil }
        }
    }

    private func historyTimes(_ user: Int) -> [Int64] {
        guard params.historyItems > 0, params.historySeconds > 0 else { return [] }
        var rng = SeededGenerator(params.seed, UInt64(user), 0x4157)
        let count = Int(Double(params.historyItems) * (0.5 + rng.unit()))
        return (0..<count).map { _ in
            params.start - 1 - Int64(rng.unit() * Double(params.historySeconds - 1))
        }.sorted()
    }

    /// The account a generated issue number, comment id, thread id or event id belongs to.
    func decodeOwner(seq: Int64) -> Int? {
        guard seq > 0, seq < IdSpace.testSeq else { return nil }
        return Int((seq - 1) % Int64(params.users)) + 1
    }

    mutating func materializeOwner(ofNumber number: Int, repo: Int, now: Int64) {
        guard repos[repo].generated, number < IdSpace.testNumber, let user = decodeOwner(seq: Int64(number)) else {
            return
        }
        materialize(user, now: now)
    }

    mutating func materializeOwner(seq: Int64, now: Int64) {
        if let user = decodeOwner(seq: seq) { materialize(user, now: now) }
    }

    private func otherPerson(_ rng: inout SeededGenerator, not user: Int) -> Person {
        if params.users > 1, rng.unit() < 0.3 {
            var other = Int(rng.next() % UInt64(params.users)) + 1
            if other == user { other = other % params.users + 1 }
            return account(other).person
        }
        let index = Int(rng.next() % UInt64(Vocabulary.collaborators.count))
        return Person(login: Vocabulary.collaborators[index], id: 6_000_000 + index)
    }

    private func title(_ rng: inout SeededGenerator) -> String {
        "\(rng.pick(Vocabulary.verbs)) \(rng.pick(Vocabulary.topics))"
    }

    private mutating func generate(user: Int, item: Int, at time: Int64) {
        let seq = Int64(item) * Int64(params.users) + Int64(user)
        var rng = SeededGenerator(params.seed, UInt64(user), UInt64(item), 0x17E3)
        if rng.unit() < 0.55 {
            generateNotification(user: user, seq: seq, at: time, rng: &rng)
        } else {
            generateEvent(user: user, seq: seq, at: time, rng: &rng)
        }
    }

    @discardableResult
    mutating func makeSubject(
        key: SubjectKey, seq: Int64, isPullRequest: Bool, title: String, body: String, author: Person,
        state: String = "open", merged: Bool = false, closedBy: Person? = nil, createdAt: Int64, updatedAt: Int64
    ) -> SubjectKey {
        if subjects[key] != nil { return key }
        // A generated close is the repository owner's unless someone else is named.
        subjects[key] = Subject(
            key: key, seq: seq, isPullRequest: isPullRequest, title: title, body: body, author: author,
            state: state, merged: merged, createdAt: createdAt, updatedAt: updatedAt,
            closedAt: state == "closed" ? updatedAt : nil,
            closedBy: state == "closed" ? (closedBy ?? repos[key.repo].owner) : nil)
        return key
    }

    mutating func addComment(
        id: Int64, to key: SubjectKey, isReview: Bool, author: Person, body: String, at time: Int64
    ) {
        comments[id] = Comment(id: id, isReview: isReview, subject: key, author: author, body: body, createdAt: time)
        guard var subject = subjects[key] else { return }
        if isReview { subject.reviewComments += 1 } else { subject.comments += 1 }
        subject.commentIds.append(id)
        subject.updatedAt = max(subject.updatedAt, time)
        subject.issueCache = nil
        subject.pullCache = nil
        subjects[key] = subject
    }

    /// Remembers a notifications listing of `user` for `polledTruth`; the oldest quarter is forgotten past 50,000.
    mutating func recordListing(_ user: Int, _ request: ListingRequest) {
        let account = account(user)
        account.listings.append(request)
        if account.listings.count > 50_000 { account.listings.removeFirst(12_500) }
    }

    /// Remembers what a 200 page delivered to `user`; past 200,000 ids the older half is forgotten.
    mutating func recordServed(_ user: Int, _ ids: [String], at time: Double) {
        let account = account(user)
        for id in ids where account.served[id] == nil { account.served[id] = time }
        if account.served.count > 200_000 {
            let cut = account.served.values.sorted()[account.served.count / 2]
            account.served = account.served.filter { $0.value >= cut }
        }
    }

    mutating func recordEventPoll(_ user: Int, at time: Double) {
        let account = account(user)
        account.eventPolls.append(time)
        if account.eventPolls.count > 50_000 { account.eventPolls.removeFirst(12_500) }
    }

    /// The notifications list's `Last-Modified` for `user` as of `now`.
    func listLastModified(_ user: Int, now: Int64) -> Int64? {
        let account = account(user)
        let visibleEnd = account.threadOrder.lowerBound(OrderKey(time: now + 1, id: Int64.min))
        let newestUpdate = visibleEnd > 0 ? account.threadOrder[visibleEnd - 1].time : nil
        guard account.listChangedAt > .min else { return newestUpdate }
        return max(newestUpdate ?? .min, account.listChangedAt)
    }

    /// Records that a test changed the visible list. `Last-Modified` then moves past every value a client may
    /// already hold (one second ahead of the clock at most), so its `If-Modified-Since` cannot hide the change.
    /// - Parameter previous: `listLastModified` from just before the change.
    mutating func noteListChange(_ user: Int, now: Int64, previous: Int64?) {
        account(user).listChangedAt = max(now, previous.map { $0 + 1 } ?? now)
    }

    mutating func insertThread(_ thread: NotificationThread) {
        let account = account(thread.user)
        // A generated thread that lands at or before a test's stamp must still move Last-Modified.
        if account.listChangedAt > .min, thread.updatedAt <= account.listChangedAt { account.listChangedAt += 1 }
        account.threads[thread.id] = thread
        account.threadOrder.insertSorted(OrderKey(time: thread.updatedAt, id: thread.id))
        threadOwner[thread.id] = thread.user
        if let key = Self.threadSubjectKey(thread) { account.threadBySubject[key] = thread.id }
    }

    /// The key of GitHub's one-thread-per-subject rule, or nil for subjects without one (releases, checks).
    static func threadSubjectKey(_ thread: NotificationThread) -> String? {
        if let key = thread.subject { return "s:\(key.repo):\(key.number)" }
        if let key = thread.discussion { return "d:\(key.repo):\(key.number)" }
        return nil
    }

    /// Moves a thread to a new version, as GitHub does on new activity: same id, new `updated_at`, maybe a new
    /// reason and latest comment. The old version is kept for the ground truth with the time it was replaced.
    /// - Parameter switchedAt: when the change happened on the wall clock (the listing shows it from then on).
    mutating func bump(
        threadId: Int64, user: Int, to time: Int64, switchedAt: Double, reason: String?, latest: LatestComment?,
        cause: String? = nil
    ) {
        let account = account(user)
        guard var thread = account.threads[threadId] else { return }
        if let index = account.threadOrder.firstIndex(of: OrderKey(time: thread.updatedAt, id: thread.id)) {
            account.threadOrder.remove(at: index)
        }
        let current = max(Double(time), switchedAt)
        thread.previous.append(
            ThreadVersion(
                updatedAt: thread.updatedAt, reason: thread.reason, latest: thread.latest,
                currentFrom: thread.currentFrom, supersededAt: current, cause: thread.cause))
        thread.updatedAt = time
        thread.currentFrom = current
        thread.cause = cause
        if let reason { thread.reason = reason }
        if let latest { thread.latest = latest }
        thread.cache = nil
        account.threads[threadId] = thread
        account.threadOrder.insertSorted(OrderKey(time: time, id: threadId))
    }

    mutating func insertEvent(_ event: UserEvent) {
        let account = account(event.user)
        account.events[event.id] = event
        account.eventOrder.insertSorted(OrderKey(time: event.createdAt, id: event.id))
        // Events that fell behind the cap are never served again: keep them for the truth, not their JSON.
        let behind = account.eventOrder.count - params.eventCap - 1
        if behind >= 0 { account.events[account.eventOrder[behind].id]?.cache = nil }
    }

    private func remember(_ key: SubjectKey, in list: inout [SubjectKey]) {
        if !list.contains(key) { list.append(key) }
        if list.count > 24 { list.removeFirst(list.count - 24) }
    }

    /// Inserts a generated notification, or, with thread bumps on, moves the user's existing thread for the same
    /// subject to this new version instead.
    private mutating func insertOrBump(_ thread: NotificationThread) {
        if params.threadBumps, let key = Self.threadSubjectKey(thread),
            let existing = account(thread.user).threadBySubject[key]
        {
            let sticky = stickyReason(of: existing, user: thread.user, newReason: thread.reason)
            bump(
                threadId: existing, user: thread.user, to: thread.updatedAt, switchedAt: Double(thread.updatedAt),
                reason: sticky ? nil : thread.reason, latest: thread.latest, cause: sticky ? "comment" : nil)
        } else {
            insertThread(thread)
        }
    }

    /// Reasons GitHub keeps on a thread when a later bump is only a comment.
    static let stickyReasons: Set<String> = ["assign", "review_requested", "mention", "team_mention", "author"]

    /// Whether bumping `threadId` for a new `comment` keeps the thread's reason (issues and pull requests only).
    func stickyReason(of threadId: Int64, user: Int, newReason: String) -> Bool {
        guard newReason == "comment", let existing = account(user).threads[threadId], existing.subject != nil else {
            return false
        }
        return Self.stickyReasons.contains(existing.reason)
    }

    private mutating func generateDiscussion(
        _ thread: inout NotificationThread, user: Int, seq: Int64, at time: Int64, rng: inout SeededGenerator
    ) {
        let account = account(user)
        thread.reason = rng.pick(["mention", "comment", "author"])
        thread.subjectType = "Discussion"
        let key: SubjectKey
        if params.threadBumps, !account.watchedDiscussions.isEmpty, rng.unit() < 0.4 {
            key = rng.pick(account.watchedDiscussions)
        } else {
            key = SubjectKey(repo: thread.repo, number: Int(seq))
            let author = thread.reason == "author" ? account.person : otherPerson(&rng, not: user)
            discussions[key] = Discussion(
                key: key, title: rng.pick(Vocabulary.discussionTitles), body: rng.pick(Vocabulary.bodies),
                author: author, createdAt: time - 60 - Int64(rng.next() % 86_400), updatedAt: time)
            remember(key, in: &account.watchedDiscussions)
        }
        thread.discussion = key
        thread.repo = key.repo
        thread.title = discussions[key]?.title ?? ""
        if thread.reason != "author" || rng.unit() < 0.5 {
            let body =
                thread.reason == "mention"
                ? rng.pick(Vocabulary.mentions).replacingOccurrences(of: "{user}", with: account.person.login)
                : rng.pick(Vocabulary.comments)
            let id = IdSpace.comment + seq
            addDiscussionComment(id: id, to: key, author: otherPerson(&rng, not: user), body: body, at: time)
            thread.latest = .comment(id)
        }
        if let updated = discussions[key]?.updatedAt { discussions[key]?.updatedAt = max(updated, time) }
    }

    mutating func addDiscussionComment(id: Int64, to key: SubjectKey, author: Person, body: String, at time: Int64) {
        discussionComments[id] = DiscussionComment(id: id, discussion: key, author: author, body: body, createdAt: time)
        discussions[key]?.comments.append(id)
        if let updated = discussions[key]?.updatedAt { discussions[key]?.updatedAt = max(updated, time) }
    }

    private mutating func generateNotification(user: Int, seq: Int64, at time: Int64, rng: inout SeededGenerator) {
        let account = account(user)
        let kind = rng.weighted([
            ("assign", 12), ("review_requested", 10), ("mention", 12), ("state_change", 8), ("author", 8),
            ("comment", 18), ("team_mention", 6), ("subscribed", 10), ("ci_activity", 5), ("release", 5),
            ("discussion", 4),
        ])
        let repo = rng.pick(account.repos)
        var thread = NotificationThread(
            id: IdSpace.thread + seq, user: user, reason: kind, subjectType: "Issue", subject: nil, repo: repo,
            title: "", latest: .none, updatedAt: time, currentFrom: Double(time))
        switch kind {
        case "ci_activity":
            thread.subjectType = "CheckSuite"
            thread.title = rng.pick(Vocabulary.checkTitles)
        case "release" where rng.unit() < 0.5:
            // A commit the user wrote, was mentioned in or commented on.
            thread.reason = rng.pick(["subscribed", "author", "mention", "comment"])
            thread.subjectType = "Commit"
            thread.commitSHA = commitSHA(seq)
            thread.title = title(&rng)
            thread.latest = .subject
        case "release":
            thread.reason = rng.pick(["subscribed", "author"])
            thread.subjectType = "Release"
            thread.releaseId = IdSpace.release + seq
            thread.title = "v\(1 + rng.next() % 4).\(rng.next() % 20).\(rng.next() % 10)"
            thread.latest = .subject
        case "discussion":
            generateDiscussion(&thread, user: user, seq: seq, at: time, rng: &rng)
        default:
            let isPullRequest = kind == "review_requested" || rng.unit() < 0.5
            let mentionInBody = kind == "mention" && rng.unit() < 0.3
            // With one thread per subject (thread bumps), every comment someone else makes on a subject is a version
            // of the user's thread about it with a kept reason: `subscribed` (watching the repository) is news about
            // a new issue or pull request, never a comment, and never re-bumps a thread the user takes part in. A
            // client can then tell the versions between two polls from the subject's comments. Without bumps, a
            // notification never shares its subject with another thread (GitHub keeps one thread per subject).
            let wantsComment =
                kind == "comment" || (kind == "mention" && !mentionInBody)
                || (kind == "subscribed" && !params.threadBumps && rng.unit() < 0.5)
            let candidates = account.watched.filter { subjects[$0]?.isPullRequest == isPullRequest }
            let key: SubjectKey
            if params.threadBumps, kind != "state_change", kind != "subscribed", !mentionInBody, !candidates.isEmpty,
                rng.unit() < 0.3
            {
                key = rng.pick(candidates)
            } else {
                let author = kind == "author" ? account.person : otherPerson(&rng, not: user)
                var body = rng.pick(Vocabulary.bodies)
                if mentionInBody {
                    body +=
                        " "
                        + rng.pick(Vocabulary.mentions).replacingOccurrences(of: "{user}", with: account.person.login)
                }
                let closed = kind == "state_change"
                key = makeSubject(
                    key: SubjectKey(repo: repo, number: Int(seq)), seq: seq, isPullRequest: isPullRequest,
                    title: title(&rng), body: body, author: author, state: closed ? "closed" : "open",
                    merged: closed && isPullRequest && rng.unit() < 0.6,
                    createdAt: time - 60 - Int64(rng.next() % 86_400), updatedAt: time)
            }
            thread.subjectType = isPullRequest ? "PullRequest" : "Issue"
            thread.subject = key
            thread.repo = key.repo
            thread.title = subjects[key]?.title ?? ""
            if wantsComment {
                let author = otherPerson(&rng, not: user)
                let body =
                    kind == "mention"
                    ? rng.pick(Vocabulary.mentions).replacingOccurrences(of: "{user}", with: account.person.login)
                    : rng.pick(Vocabulary.comments)
                let isReview = isPullRequest && rng.unit() < 0.4
                addComment(id: IdSpace.comment + seq, to: key, isReview: isReview, author: author, body: body, at: time)
                thread.latest = .comment(IdSpace.comment + seq)
            } else {
                thread.latest = rng.unit() < 0.5 ? .subject : .none
            }
            remember(key, in: &account.watched)
        }
        insertOrBump(thread)
    }

    private mutating func generateEvent(user: Int, seq: Int64, at time: Int64, rng: inout SeededGenerator) {
        let account = account(user)
        var kind = rng.weighted([
            ("pr_opened", 14), ("issue_opened", 14), ("issue_comment", 18), ("review_comment", 10), ("review", 6),
            ("watch", 12),
            ("push", 20), ("issue_closed", 5), ("pr_closed", 5),
        ])
        let repo = rng.pick(account.repos)
        var lagRng = SeededGenerator(params.seed, UInt64(user), UInt64(seq), 0x1A6)
        let lag = Int64((lagRng.unit() * params.eventLagSeconds).rounded())
        var event = UserEvent(
            id: IdSpace.event + seq, user: user, type: "PushEvent", repo: repo, createdAt: time, visibleAt: time + lag)
        if kind == "issue_closed" || kind == "pr_closed" {
            let wantPull = kind == "pr_closed"
            let open = account.own.filter { subjects[$0]?.isPullRequest == wantPull && subjects[$0]?.state == "open" }
            if let key = open.first, var subject = subjects[key] {
                subject.state = "closed"
                subject.merged = wantPull
                subject.closedAt = time
                subject.closedBy = account.person
                subject.updatedAt = max(subject.updatedAt, time)
                subject.issueCache = nil
                subject.pullCache = nil
                subjects[key] = subject
                event.type = wantPull ? "PullRequestEvent" : "IssuesEvent"
                event.action = "closed"
                event.repo = key.repo
                event.subject = subject.snapshot
                account.own.removeAll { $0 == key }
                insertEvent(event)
                return
            }
            kind = "push"
        }
        switch kind {
        case "pr_opened", "issue_opened":
            let isPullRequest = kind == "pr_opened"
            let key = makeSubject(
                key: SubjectKey(repo: repo, number: Int(seq)), seq: seq, isPullRequest: isPullRequest,
                title: title(&rng), body: rng.pick(Vocabulary.bodies), author: account.person, createdAt: time,
                updatedAt: time)
            remember(key, in: &account.own)
            event.type = isPullRequest ? "PullRequestEvent" : "IssuesEvent"
            event.action = "opened"
            event.subject = subjects[key]?.snapshot
        case "issue_comment", "review_comment":
            let isReview = kind == "review_comment"
            let candidates = (account.own + account.watched).filter { !isReview || subjects[$0]?.isPullRequest == true }
            let key: SubjectKey
            if !candidates.isEmpty, rng.unit() < 0.7 {
                key = rng.pick(candidates)
            } else {
                key = makeSubject(
                    key: SubjectKey(repo: repo, number: Int(seq)), seq: seq,
                    isPullRequest: isReview || rng.unit() < 0.4, title: title(&rng), body: rng.pick(Vocabulary.bodies),
                    author: otherPerson(&rng, not: user), createdAt: time - 60 - Int64(rng.next() % 86_400),
                    updatedAt: time)
                remember(key, in: &account.watched)
            }
            let commentId = IdSpace.comment + seq
            addComment(
                id: commentId, to: key, isReview: isReview, author: account.person,
                body: rng.pick(Vocabulary.comments), at: time)
            event.type = isReview ? "PullRequestReviewCommentEvent" : "IssueCommentEvent"
            event.action = "created"
            event.repo = key.repo
            event.subject = subjects[key]?.snapshot
            event.comment = comments[commentId]
        case "review":
            let candidates = (account.own + account.watched).filter { subjects[$0]?.isPullRequest == true }
            let key: SubjectKey
            if !candidates.isEmpty, rng.unit() < 0.7 {
                key = rng.pick(candidates)
            } else {
                key = makeSubject(
                    key: SubjectKey(repo: repo, number: Int(seq)), seq: seq, isPullRequest: true, title: title(&rng),
                    body: rng.pick(Vocabulary.bodies), author: otherPerson(&rng, not: user),
                    createdAt: time - 60 - Int64(rng.next() % 86_400), updatedAt: time)
                remember(key, in: &account.watched)
            }
            event.type = "PullRequestReviewEvent"
            event.action = "created"
            event.repo = key.repo
            event.subject = subjects[key]?.snapshot
            event.review = Review(
                id: IdSpace.review + seq, state: rng.pick(["approved", "commented", "changes_requested"]),
                body: rng.pick(Vocabulary.comments))
        case "watch":
            event.type = "WatchEvent"
            event.action = "started"
            event.repo = Int(rng.next() % UInt64(generatedRepoCount))
        default:
            event.type = "PushEvent"
        }
        insertEvent(event)
    }

    /// Encoded bodies embed the base URL; after a restart on another port they must be encoded again.
    mutating func dropEncodedBodies() {
        for account in accounts {
            for id in account.threads.keys { account.threads[id]?.cache = nil }
            for id in account.events.keys { account.events[id]?.cache = nil }
        }
        for key in subjects.keys {
            subjects[key]?.issueCache = nil
            subjects[key]?.pullCache = nil
        }
        for id in comments.keys { comments[id]?.cache = nil }
    }

    mutating func nextSeq() -> Int64 {
        nextTestSeq += 1
        return nextTestSeq
    }

    /// Finds or creates a repository by `owner/name` for test-made items.
    mutating func repoIndex(named fullName: String) -> Int {
        if let index = repoByName[fullName.lowercased()] { return index }
        let parts = fullName.split(separator: "/", maxSplits: 1).map(String.init)
        let ownerLogin = parts.first ?? "sim-tests"
        let name = parts.count > 1 ? parts[1] : fullName
        var owner = person(login: ownerLogin)
        if accountIndex(login: ownerLogin) == nil { owner.isOrganization = true }
        let index = repos.count
        repos.append(Repo(index: index, id: 800_000 + index, owner: owner, name: name, generated: false))
        repoByName[fullName.lowercased()] = index
        return index
    }

    mutating func allocateNumber(repo: Int) -> Int {
        while true {
            let local = repos[repo].nextTestNumber
            repos[repo].nextTestNumber += 1
            let number = repos[repo].generated ? IdSpace.testNumber + local : local
            if subjects[SubjectKey(repo: repo, number: number)] == nil { return number }
        }
    }
}
