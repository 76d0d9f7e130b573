import Foundation
import SyncModel

/// What the pending notification versions are told from: their subjects, latest comments, comment lists and
/// discussions, each loaded once per sync.
extension SyncRun {
    /// The subjects, comment lists and discussions this sync loaded for the pending versions.
    struct SubjectLoad {
        var results: [String: FetchResult]
        var plans: [String: CommentListPlan]
        var discussions: [String: DiscussionLookup]
    }

    /// Loads what the pending versions are told from: one fetch per distinct subject (and comment) URL, in parallel
    /// within bounds, then the comment lists some threads need, then the discussions.
    mutating func loadSubjects(
        _ pending: [PendingNotification], window: NotificationWindow, halt: inout Stop?
    ) async -> SubjectLoad {
        let fetcher = SubjectFetcher(client: client, credentials: credentials, deadline: deadline, logger: logger)
        let (fetchedNow, fetchStop) = await fetcher.fetch(
            subjectJobs(pending), parallelism: configuration.subjectParallelism)
        var results = fetchedNow
        if let fetchStop, halt == nil { halt = Stop(fetchStop) }
        var plans: [String: CommentListPlan] = [:]
        var listJobs: [FetchJob] = []
        if halt == nil { (plans, listJobs) = commentListPlans(pending, window: window, results: results) }
        if !listJobs.isEmpty {
            let (lists, listStop) = await fetcher.fetch(listJobs, parallelism: configuration.subjectParallelism)
            if let listStop, halt == nil { halt = Stop(listStop) }
            results.merge(lists) { _, new in new }
        }
        fetched.merge(results) { _, new in new }
        let discussions = await discussionLookups(pending, halt: &halt)
        return SubjectLoad(results: results, plans: plans, discussions: discussions)
    }

    /// The subject and newest-comment URLs of the pending issues and pull requests, each once.
    private func subjectJobs(_ pending: [PendingNotification]) -> [FetchJob] {
        var jobs: [FetchJob] = []
        var seen = Set<String>()
        for item in pending where ActivityText.isPullRequest(subjectType: item.thread.subject.type) != nil {
            if let subjectURL = item.thread.subject.url, seen.insert(subjectURL).inserted {
                jobs.append(FetchJob(url: subjectURL, isComment: false))
            }
            if let commentURL = commentURL(for: item.thread), seen.insert(commentURL).inserted {
                jobs.append(FetchJob(url: commentURL, isComment: true))
            }
        }
        return jobs
    }

    /// The comment lists each thread needs, by thread, and the distinct list URLs to fetch.
    ///
    /// `latest_comment_url` names the subject's newest comment when GitHub is polled, not the one that made the
    /// version: a reply the user wrote minutes later moves it. A version older than the comment it names reads the
    /// subject's comments around its `updated_at` to find its own. And GitHub lists only a thread's newest version:
    /// one that appeared after the last listing began and was superseded before this one (or that a sync whose
    /// output was rolled back was handed) is told apart by the subject's comments and `closed_at` (see
    /// `recoveredVersions`), from this listing's `since` but not before the last listing's `before`: what was made
    /// earlier was listable then, and a thread the user is notified about only now may have comments from before
    /// they were subscribed to it.
    private func commentListPlans(
        _ pending: [PendingNotification], window: NotificationWindow, results: [String: FetchResult]
    ) -> ([String: CommentListPlan], [FetchJob]) {
        let querySince = WireFormat.parseDate(QueryDate.format(window.since)) ?? window.since
        let recoverySince = max(querySince, window.listedBefore ?? querySince)
        var plans: [String: CommentListPlan] = [:]
        var listJobs: [FetchJob] = []
        var listed = Set<String>()
        for (threadId, items) in Dictionary(grouping: pending, by: { $0.thread.id }) {
            guard
                let plan = commentListPlan(
                    items, results: results,
                    recoverySince: window.previous != nil || isResync ? recoverySince : nil)
            else { continue }
            plans[threadId] = plan
            for url in plan.urls where listed.insert(url).inserted {
                listJobs.append(FetchJob(url: url, isComment: false, isList: true))
            }
        }
        return (plans, listJobs)
    }

    /// Discussions have no REST subject: one GraphQL query per repository resolves their pages. Once the sync is
    /// halted, the rest are not attempted.
    private func discussionLookups(
        _ pending: [PendingNotification], halt: inout Stop?
    ) async -> [String: DiscussionLookup] {
        var discussions: [String: DiscussionLookup] = [:]
        for item in pending where item.thread.subject.type == "Discussion" {
            let repo = item.thread.repository.full_name
            guard discussions[repo] == nil else { continue }
            if halt != nil {
                discussions[repo] = .notAttempted
                continue
            }
            let (lookup, stop) = await lookUpDiscussions(repo: repo)
            discussions[repo] = lookup
            if let stop { halt = Stop(stop) }
        }
        return discussions
    }

    /// The comment lists one thread's versions need, read once per sync.
    struct CommentListPlan {
        var urls: [String]
        /// Set when versions between the last listing and this one are looked for: from here on (the later of this
        /// listing's `since` and the last listing's `before`, whole seconds).
        var recoverySince: Date?
    }

    /// Which of the subject's comment lists to read for one thread's listed versions, since when: for a version
    /// whose named comment came later (its own comment is in there), and — given `recoverySince`, not on a first
    /// sync — when the subject has more comments than the listed versions account for, so some may have made
    /// versions GitHub no longer lists. nil when none is needed: an unchanged subject costs nothing extra.
    private func commentListPlan(
        _ items: [PendingNotification], results: [String: FetchResult], recoverySince: Date?
    ) -> CommentListPlan? {
        guard let thread = items.first?.thread, let isPR = ActivityText.isPullRequest(subjectType: thread.subject.type),
            let subjectURL = thread.subject.url,
            subjectURL.range(of: isPR ? "/pulls/" : "/issues/", options: .backwards) != nil,
            case .subject(let subject) = results[subjectURL]
        else { return nil }
        let overlap = seconds(configuration.overlap)
        var since: Date?
        var issueList = false
        var reviewList = false
        for item in items where drifted(item.thread, updatedAt: item.updatedAt, results: results) {
            since = earlier(since, item.updatedAt.addingTimeInterval(-overlap))
            issueList = true
            reviewList = isPR
        }
        var recovering: Date?
        if let recoverySince {
            // Comments the listed versions name as their own are accounted for; any other may be a lost version.
            let own = items.filter { ownComment(of: $0, results: results) != nil }.count
            let issueComments = subject.comments ?? 1
            let reviewComments = isPR ? (subject.review_comments ?? 1) : 0
            let closedBetween =
                subject.closed_at.flatMap(WireFormat.parseDate).map { closed in
                    closed >= recoverySince && items.contains { closed < $0.updatedAt }
                } ?? false
            if issueComments + reviewComments > own {
                since = earlier(since, recoverySince)
                issueList = issueList || issueComments > 0
                reviewList = reviewList || reviewComments > 0
                recovering = recoverySince
            } else if closedBetween {
                recovering = recoverySince
            }
        }
        guard since != nil || recovering != nil else { return nil }
        var urls: [String] = []
        if let since {
            let query = "/comments?since=\(QueryDate.format(since))&per_page=100"
            if issueList {
                urls.append((isPR ? replacingLast("/pulls/", with: "/issues/", in: subjectURL) : subjectURL) + query)
            }
            if reviewList { urls.append(subjectURL + query) }
        }
        return CommentListPlan(urls: urls, recoverySince: recovering)
    }

    private func replacingLast(_ target: String, with replacement: String, in text: String) -> String {
        guard let range = text.range(of: target, options: .backwards) else { return text }
        return text.replacingCharacters(in: range, with: replacement)
    }
}
