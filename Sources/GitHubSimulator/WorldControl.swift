public import Foundation
import Synchronization

/// Test control: put specific things into the world at specific times. All of it is thread-safe.
extension GitHubSimulator {
    /// Adds a notification thread for `login` and returns its id.
    ///
    /// For `Issue`/`PullRequest` subjects the issue `repo#number` is reused when it exists (its title then stays),
    /// otherwise created with `title`, authored by `actor`. With `commentBody`, `actor` also comments and the
    /// thread's `latest_comment_url` names that comment (`reviewComment` makes it a pull request review comment).
    /// A `Discussion` creates a discussion in `repo` (titled `title`, by `actor`, with `commentBody` as its latest
    /// comment), reachable only through GraphQL `repository.discussions`; its thread's `subject.url` is null, as on
    /// GitHub. Other subject types (`Release`, `CheckSuite`, …) get no fetchable subject.
    /// - Parameters:
    ///   - number: nil allocates a new number in `repo`.
    ///   - state: the subject's state when it is created (`open` or `closed`).
    ///   - closedBy: who closed (a pull request: merged) it, when `state` is `closed`; the repository owner if nil.
    ///   - at: the thread's `updated_at` (whole seconds); a future time hides the thread until then.
    /// With `threadBumps` on, a notification about a subject that already has a thread for `login` re-bumps that
    /// thread (as GitHub does) and returns its id.
    /// - Returns: the thread id, as the API sends it.
    /// - Throws: `SimulatorError` for an unknown login.
    @discardableResult
    public func addNotification(
        for login: String, reason: String, subjectType: String = "Issue", repo: String = "acme-labs/sim-tests",
        number: Int? = nil, title: String = "Simulated issue", actor: String = "ada-sim", commentBody: String? = nil,
        reviewComment: Bool = false, state: String = "open", closedBy: String? = nil, at: Date = Date()
    ) throws -> String {
        let user = try accountIndex(login)
        let time = Timestamp.seconds(at)
        let now = Timestamp.now()
        return world.withLock { world in
            world.materialize(user, now: now)
            let seq = world.nextSeq()
            let repoIndex = world.repoIndex(named: repo)
            var thread = NotificationThread(
                id: IdSpace.thread + seq, user: user, reason: reason, subjectType: subjectType, subject: nil,
                repo: repoIndex, title: title, latest: .none, updatedAt: time, currentFrom: Double(time))
            if subjectType == "Discussion" {
                let number = number ?? world.allocateNumber(repo: repoIndex)
                let key = SubjectKey(repo: repoIndex, number: number)
                if world.discussions[key] == nil {
                    world.discussions[key] = Discussion(
                        key: key, title: title, body: "\(title) — started by \(actor).",
                        author: world.person(login: actor), createdAt: min(time, now) - 60, updatedAt: time)
                }
                thread.discussion = key
                thread.title = world.discussions[key]?.title ?? title
                if let commentBody {
                    let commentId = IdSpace.comment + seq
                    world.addDiscussionComment(
                        id: commentId, to: key, author: world.person(login: actor), body: commentBody, at: time)
                    thread.latest = .comment(commentId)
                }
            } else if subjectType == "Issue" || subjectType == "PullRequest" {
                let number = number ?? world.allocateNumber(repo: repoIndex)
                let key = SubjectKey(repo: repoIndex, number: number)
                if world.subjects[key] == nil { world.materializeOwner(ofNumber: number, repo: repoIndex, now: now) }
                let author = world.person(login: actor)
                world.makeSubject(
                    key: key, seq: seq, isPullRequest: subjectType == "PullRequest", title: title,
                    body: "\(title) — reported by \(actor).", author: author, state: state,
                    merged: state == "closed" && subjectType == "PullRequest",
                    closedBy: closedBy.map { world.person(login: $0) }, createdAt: min(time, now) - 60,
                    updatedAt: time)
                thread.subject = key
                thread.title = world.subjects[key]?.title ?? title
                if let commentBody {
                    let commentId = IdSpace.comment + seq
                    world.addComment(
                        id: commentId, to: key, isReview: reviewComment && subjectType == "PullRequest", author: author,
                        body: commentBody, at: time)
                    thread.latest = .comment(commentId)
                } else {
                    thread.latest = .subject
                }
            } else if subjectType == "Release" {
                thread.releaseId = IdSpace.release + seq
                thread.latest = .subject
            } else if subjectType == "Commit" {
                thread.commitSHA = world.commitSHA(seq)
                thread.latest = .subject
            }
            if time <= now { world.noteListChange(user, now: now, previous: world.listLastModified(user, now: now)) }
            if world.params.threadBumps, let key = WorldState.threadSubjectKey(thread),
                let existing = world.account(user).threadBySubject[key]
            {
                // GitHub keeps one thread per subject and user: the existing one is re-bumped instead, and keeps
                // its reason when the news is only a comment.
                let sticky = world.stickyReason(of: existing, user: user, newReason: reason)
                world.bump(
                    threadId: existing, user: user, to: time, switchedAt: Date().timeIntervalSince1970,
                    reason: sticky ? nil : reason, latest: thread.latest, cause: sticky ? "comment" : nil)
                return String(existing)
            }
            world.insertThread(thread)
            return String(thread.id)
        }
    }

    /// Re-bumps a thread as GitHub does on new activity: same thread id, a new `updated_at` (so a new activity id),
    /// optionally a new `reason` and a new comment by `actor` that `latest_comment_url` then names. A comment without
    /// a new reason keeps the thread's reason, as GitHub does; the truth then says the comment made that version.
    /// The previous version stays in the ground truth with the moment it was replaced.
    /// - Throws: `SimulatorError` for an unknown thread.
    public func touchThread(
        _ threadId: String, at: Date = Date(), commentBody: String? = nil, actor: String = "grace-sim",
        reason: String? = nil
    ) throws {
        let time = Timestamp.seconds(at)
        let switchedAt = Date().timeIntervalSince1970
        try withThread(threadId) { world, thread in
            var latest: LatestComment?
            if let commentBody, let key = thread.subject {
                let commentId = IdSpace.comment + world.nextSeq()
                world.addComment(
                    id: commentId, to: key, isReview: false, author: world.person(login: actor), body: commentBody,
                    at: time)
                latest = .comment(commentId)
            } else if let commentBody, let key = thread.discussion {
                let commentId = IdSpace.comment + world.nextSeq()
                world.addDiscussionComment(
                    id: commentId, to: key, author: world.person(login: actor), body: commentBody, at: time)
                latest = .comment(commentId)
            }
            world.account(thread.user).threads[thread.id] = thread
            let commentOnly = reason == nil && latest != nil && thread.subject != nil
            world.bump(
                threadId: thread.id, user: thread.user, to: time, switchedAt: switchedAt, reason: reason,
                latest: latest, cause: commentOnly ? "comment" : nil)
            thread = world.account(thread.user).threads[thread.id] ?? thread
        }
    }

    /// Runs `action` once `pages` more `GET /notifications` pages (200s) have been served to `login`, after the
    /// last of them was made and before it is sent. Changes the world between two pages of one listing, or between
    /// a listing and what the client asks next, without relying on timing.
    /// - Throws: `SimulatorError` for an unknown login.
    public func afterNotificationPages(
        _ pages: Int, for login: String, _ action: @escaping @Sendable () -> Void
    ) throws {
        let user = try accountIndex(login)
        pageHooks.withLock { $0.append(.init(user: user, remaining: max(1, pages), action: action)) }
    }

    /// Makes a thread's `subject.url` and `latest_comment_url` name `host` (e.g. `localhost:PORT`, or a full origin
    /// such as `https://127.0.0.1:PORT` for another scheme) instead of the simulator, to prove a client never sends
    /// its token to a host it was not configured with. Such threads are left out of the ground truth.
    public func setSubjectURLHost(threadId: String, host: String) throws {
        try withThread(threadId) { _, thread in thread.foreignHost = host }
    }

    /// Same as `setSubjectURLHost(threadId:host:)`.
    public func setSubjectHost(threadId: String, host: String) throws {
        try setSubjectURLHost(threadId: threadId, host: host)
    }

    private func withThread(
        _ threadId: String, _ change: (inout WorldState, inout NotificationThread) -> Void
    ) throws {
        guard let id = Int64(threadId) else { throw SimulatorError.unknownThread(threadId) }
        let now = Timestamp.now()
        let found = world.withLock { world -> Bool in
            if world.threadOwner[id] == nil { world.materializeOwner(seq: id - IdSpace.thread, now: now) }
            guard let user = world.threadOwner[id], var thread = world.account(user).threads[id] else { return false }
            let previous = world.listLastModified(user, now: now)
            let wasVisible = thread.updatedAt <= now
            change(&world, &thread)
            thread.cache = nil
            world.account(user).threads[id] = thread
            if wasVisible || thread.updatedAt <= now { world.noteListChange(user, now: now, previous: previous) }
            return true
        }
        if !found { throw SimulatorError.unknownThread(threadId) }
    }

    /// Adds an event to `login`'s public timeline and returns its id.
    ///
    /// `PullRequestEvent`/`IssuesEvent` (default action `opened`) create the pull request / issue (authored by
    /// `login`) unless `repo#number` exists; `IssueCommentEvent`/`PullRequestReviewCommentEvent` (default action
    /// `created`) add a comment by `login` to it (created as an issue, or a pull request when `onPullRequest` or
    /// for review comments). `PullRequestReviewEvent` (default action `created`) submits a review by `login`, with
    /// `commentBody` as its body, on the pull request. `DiscussionEvent` (default action `created`) opens a discussion
    /// titled `title` in `repo`. Any other type (`WatchEvent`, `PushEvent`, …) is noise with no
    /// subject.
    /// `appearsAfter` makes the event show up in `/users/{u}/events` that long after `at` (GitHub documents 30 s to
    /// 6 h), to test late events deliberately; the configured `eventLag` applies to generated events only.
    /// - Throws: `SimulatorError` for an unknown login.
    @discardableResult
    public func addEvent(
        for login: String, type: String, action: String? = nil, repo: String = "acme-labs/sim-tests",
        number: Int? = nil, title: String = "Simulated change", commentBody: String = "Simulated comment",
        onPullRequest: Bool = false, at: Date = Date(), appearsAfter: Duration = .zero
    ) throws -> String {
        let user = try accountIndex(login)
        let time = Timestamp.seconds(at)
        let now = Timestamp.now()
        return world.withLock { world in
            world.materialize(user, now: now)
            let seq = world.nextSeq()
            let repoIndex = world.repoIndex(named: repo)
            let person = world.account(user).person
            let lag = appearsAfter.components
            let lagSeconds = Int64((Double(lag.seconds) + Double(lag.attoseconds) / 1e18).rounded(.up))
            var event = UserEvent(
                id: IdSpace.event + seq, user: user, type: type, repo: repoIndex, createdAt: time,
                visibleAt: time + max(0, lagSeconds))
            let isComment = type == "IssueCommentEvent" || type == "PullRequestReviewCommentEvent"
            let isReview = type == "PullRequestReviewEvent"
            let hasSubject = isComment || isReview || type == "PullRequestEvent" || type == "IssuesEvent"
            if hasSubject {
                let isPullRequest =
                    type == "PullRequestEvent" || type == "PullRequestReviewCommentEvent" || isReview || onPullRequest
                let number = number ?? world.allocateNumber(repo: repoIndex)
                let key = SubjectKey(repo: repoIndex, number: number)
                if world.subjects[key] == nil { world.materializeOwner(ofNumber: number, repo: repoIndex, now: now) }
                world.makeSubject(
                    key: key, seq: seq, isPullRequest: isPullRequest, title: title, body: "\(title).",
                    author: isComment || isReview ? world.person(login: "ada-sim") : person,
                    createdAt: min(time, now) - 60,
                    updatedAt: time)
                event.action = action ?? (isComment || isReview ? "created" : "opened")
                if isReview { event.review = Review(id: IdSpace.review + seq, state: "commented", body: commentBody) }
                if isComment {
                    let commentId = IdSpace.comment + seq
                    world.addComment(
                        id: commentId, to: key, isReview: type == "PullRequestReviewCommentEvent", author: person,
                        body: commentBody, at: time)
                    event.comment = world.comments[commentId]
                }
                event.subject = world.subjects[key]?.snapshot
            } else if type == "DiscussionEvent" {
                // GitHub's events feed has had this type since 2025; it is noise for the activities.
                let key = SubjectKey(repo: repoIndex, number: number ?? world.allocateNumber(repo: repoIndex))
                if world.discussions[key] == nil {
                    world.discussions[key] = Discussion(
                        key: key, title: title, body: "\(title).", author: person, createdAt: time, updatedAt: time)
                }
                event.action = action ?? "created"
                event.discussion = key
            } else {
                event.action = action ?? (type == "WatchEvent" ? "started" : nil)
            }
            world.insertEvent(event)
            return String(event.id)
        }
    }
}
