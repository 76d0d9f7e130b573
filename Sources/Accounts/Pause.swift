public import Foundation
import SyncModel

extension AccountsTopicClient {
    /// Which accounts to pause or resume.
    public enum PauseSelection: Sendable, Hashable {
        case accounts([String])
        /// Every account of this integration.
        case integration(String)
    }

    /// Pauses accounts: their records are written again with `settings.paused` set — the sealed config copied as
    /// it is, so no sealing key is needed. Schedulers fire no job for a paused account; workers skip jobs of it that
    /// still arrive (their run records say `skipped`).
    ///
    /// A record is rewritten whole: an `accounts add`/`import` of the same account running at the same moment may
    /// be overwritten by it (or resume it); pause and reconnect one after the other.
    /// - Returns: the ids changed (already paused ones are left as they are) and the requested ids not found.
    public func pause(_ selection: PauseSelection, note: String? = nil, now: Date = Date()) async throws
        -> (changed: [String], unknown: [String])
    {
        try await rewrite(selection) { settings in
            guard settings.paused == nil else { return false }
            settings.paused = AccountSettings.Pause(reason: .manual, at: now, note: note)
            return true
        }
    }

    /// Resumes accounts: clears a pause, and — as the record is written again — ends a failing account's backoff
    /// or auto-pause (workers start its failure streak afresh when its record changes). Their next tick runs.
    public func resume(_ selection: PauseSelection) async throws -> (changed: [String], unknown: [String]) {
        try await rewrite(selection) { settings in
            settings.paused = nil
            return true
        }
    }

    private func rewrite(_ selection: PauseSelection, _ change: (inout AccountSettings) -> Bool) async throws
        -> (changed: [String], unknown: [String])
    {
        let accounts: [AccountRecord]
        var unknown: [String] = []
        switch selection {
        case .accounts(let ids):
            let found = try await read(accountIds: ids).accounts
            accounts = ids.compactMap { found[$0] }
            unknown = ids.filter { found[$0] == nil }
        case .integration(let key):
            accounts = try await readAll().accounts.values.filter { $0.integration == key }
                .sorted { $0.accountId < $1.accountId }
        }
        var changed: [AccountRecord] = []
        for var account in accounts where change(&account.settings) {
            account.updatedAt = Date()
            changed.append(account)
        }
        if !changed.isEmpty { try await put(changed) }
        return (changed.map(\.accountId), unknown)
    }
}
