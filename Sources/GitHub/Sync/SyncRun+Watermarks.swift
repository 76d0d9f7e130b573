import Foundation
import IntegrationCatalog
import SyncModel

/// Where the next sync starts: the notification watermark and validator, the event watermark, ids and ETag, and
/// the emitted notification ids still inside the re-read window.
extension SyncRun {
    /// The watermark and the validator the next sync starts from.
    mutating func advanceNotificationWatermark(
        _ window: NotificationWindow, listing: NotificationListing, pass: NotificationPass, failedThreads: Int
    ) {
        // The watermark: the newest item processed, but never past one that failed, nor past unread pages.
        var watermark = window.base
        if listing.complete {
            var candidate = pass.processedMax ?? window.base
            if let failedMin = pass.failedMin { candidate = min(candidate, failedMin) }
            watermark = max(window.base, candidate)
        }
        if let previous = window.previous { watermark = max(previous, watermark) }
        state.lastSyncTime = watermark

        // The validator is kept only when everything up to `started` was read: otherwise a 304 next time would
        // hide what is still missing (a failed subject, or a thread touched during this sync).
        // HTTP dates have whole seconds and `before` excludes its own second, so a Last-Modified in that second
        // may stand for a thread this sync did not list: only an earlier one is safe to send back.
        if listing.complete { state.lastListingBefore = window.beforeSecond }
        if listing.complete, failedThreads == 0, pass.halt == nil, let lastModified = listing.lastModified,
            let modified = HTTPDate.parse(lastModified), modified < window.beforeSecond
        {
            state.notificationsLastModified = lastModified
        } else {
            state.notificationsLastModified = nil
        }
    }

    /// The watermark, the ids and the ETag the next read starts from. `settled`: nothing halted the sync and no
    /// event waits for its pull request.
    mutating func advanceEventWatermark(_ window: EventWindow, listing: EventListing, settled: Bool) {
        var watermark = window.previous ?? window.base
        if listing.complete { watermark = max(watermark, listing.processedMax ?? watermark) }
        state.lastUserEventTime = watermark
        // Remember the ids down to where the next read will look; a complete read saw every one of them.
        let nextHorizon = watermark.addingTimeInterval(-seconds(configuration.eventLagHorizon))
        if listing.complete, !isResync {
            state.eventIds = listing.listed.filter { $0.created >= nextHorizon }.map(\.id)
        } else if listing.complete {
            // A resync read only down to its own `since`: the ids known below it still count, or the next normal
            // read (down to the lag horizon) would emit them again.
            state.eventIds = boundedIds(
                window.known.union(listing.listed.filter { $0.created >= nextHorizon }.map(\.id)))
        } else {
            state.eventIds = boundedIds(listing.seenIds.union(listing.listed.map(\.id)))
        }
        // The first page's ETag is kept even when that page does not reach the horizon: an unchanged account must
        // cost no quota. A late event lower down then waits for the first page to change (any new event), and is
        // emitted by that read, which goes down to the horizon again; while nothing new happens the horizon stays
        // where it is, so it cannot slip below it.
        state.eventsETag = listing.complete && settled ? listing.etag : nil
    }

    /// Event ids in a stable order (oldest first: GitHub's ids grow), at most as many as GitHub keeps, so the state
    /// stays bounded and its bytes do not depend on set order.
    private func boundedIds(_ ids: Set<String>) -> [String] {
        let sorted = ids.sorted { ($0.count, $0) < ($1.count, $1) }
        return Array(sorted.suffix(max(1, configuration.eventHistoryLimit)))
    }

    /// Emitted notifications (`{thread}:{updated_at}`) still inside the re-read window; older ones are never listed
    /// again, so keeping them would only make every state record heavier.
    func prunedRecentIds() -> [String] {
        // The listing's `since` goes out in whole seconds, rounded down: the floor must be too, or a thread in that
        // first second is listed again but already forgotten.
        let floor = state.lastSyncTime.map {
            Date(
                timeIntervalSince1970: $0.addingTimeInterval(-seconds(configuration.overlap)).timeIntervalSince1970
                    .rounded(.down))
        }
        return recent.ids.filter { key in
            guard let floor else { return true }
            guard let colon = key.firstIndex(of: ":"),
                let updatedAt = WireFormat.parseDate(String(key[key.index(after: colon)...]))
            else { return false }
            return updatedAt >= floor
        }
    }
}
