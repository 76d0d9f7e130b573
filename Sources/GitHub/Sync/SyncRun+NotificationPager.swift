import Foundation
import SyncModel

/// The notification pager: the listing read by time, page after page, down to the window's `since`.
extension SyncRun {
    /// What the pager listed: each version of a thread once.
    struct NotificationListing {
        var threads: [NotificationThread] = []
        /// `{thread}:{updated_at}` of every listed version.
        var listedIds = Set<String>()
        /// Every page of the window was read (or the page limit recorded a gap).
        var complete = false
        var lastModified: String?

        /// Adds a page's versions not listed yet; returns the oldest `updated_at` on the page.
        mutating func add(_ page: [NotificationThread]) -> Date? {
            var oldest: Date?
            for thread in page {
                if let updatedAt = WireFormat.parseDate(thread.updated_at) { oldest = earlier(oldest, updatedAt) }
                if listedIds.insert("\(thread.id):\(thread.updated_at)").inserted { threads.append(thread) }
            }
            return oldest
        }
    }

    /// Reads the window's pages. nil when GitHub answers 304: nothing changed since the last complete read.
    ///
    /// Paged by time, not by page number: each request asks for threads updated before the oldest one listed so
    /// far. GitHub re-bumps a thread on new activity (same id, newer `updated_at`, so it leaves this `before`-pinned
    /// window); with page numbers every later thread would move up one place and the one at the page boundary would
    /// never be listed. Whole seconds and an exclusive `before` mean the next window ends one second after the
    /// oldest seen, so threads sharing that second are listed again and dropped as repeats.
    mutating func listNotifications(
        _ window: NotificationWindow, now: Date, halt: inout Stop?
    ) async -> NotificationListing? {
        var listing = NotificationListing()
        var before = started
        var fallbackURL: String?
        var pages = 0
        while true {
            let url =
                fallbackURL
                ?? client.apiURL(
                    "/notifications?all=true&since=\(QueryDate.format(window.since))&before=\(QueryDate.format(before))"
                        + "&per_page=\(configuration.notificationsPerPage)")
            let response: GitHubResponse
            let page: [NotificationThread]?
            do {
                (page, response) = try await client.getJSON(
                    [NotificationThread].self, url, credentials: credentials,
                    conditional: pages == 0 ? window.conditional : [],
                    deadline: deadline)
            } catch {
                halt = notificationsFailed(error, firstPage: pages == 0, now: now)
                return listing
            }
            if pages == 0 {
                state.nextNotificationsPoll = Self.nextPoll(after: response)
                listing.lastModified = response.lastModified
                state.notificationsRefused = nil
            }
            pages += 1
            guard let page else {
                // 304: nothing changed since the last complete read. Free.
                state.lastListingBefore = window.beforeSecond
                return nil
            }
            guard let oldest = listing.add(page), response.nextLink != nil else {
                listing.complete = true
                return listing
            }
            if pages >= configuration.maxPages {
                // The window holds more than we read; record what was not covered instead of looping forever.
                state.gaps.append(.init(from: window.since, to: oldest, source: "notifications"))
                listing.complete = true
                return listing
            }
            let nextBefore = Date(timeIntervalSince1970: oldest.timeIntervalSince1970.rounded(.down) + 1)
            if nextBefore.timeIntervalSince1970 < before.timeIntervalSince1970.rounded(.down) {
                before = nextBefore
                fallbackURL = nil
            } else {
                // A whole page within one second: no earlier `before` exists, so page through that second by number
                // (only here can a re-bump still shift a thread past a page boundary).
                fallbackURL = response.nextLink
            }
        }
    }

    /// A listing request that failed: the stop when it ends the sync; otherwise the problem is recorded and the
    /// events are still read.
    private mutating func notificationsFailed(_ error: GitHubError, firstPage: Bool, now: Date) -> Stop? {
        if error.stopsSync { return Stop(error) }
        if error.httpStatus == 403, firstPage {
            // GitHub App user and installation tokens and fine-grained PATs may not read notifications at all; say
            // that plainly (it will not pass by itself), go on with the events, and do not ask again for a while.
            problems.append(Self.unsupportedTokenReason(error.serverMessage ?? "HTTP 403"))
            state.notificationsRefused = now
        } else {
            problems.append("notifications: \(error.description)")
        }
        return nil
    }
}
