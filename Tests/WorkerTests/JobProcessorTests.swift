import Foundation
import IntegrationCatalog
import SyncModel
import Synchronization
import Testing
@testable import Worker

@Suite struct JobProcessorTests {
    let integration = FakeIntegration()
    var processor: JobProcessor {
        var processor = JobProcessor(
            integrations: IntegrationRegistry([integration]), sealer: FakeSealer(), topics: TopicNames(),
            workerId: "w1")
        processor.retryDelay = .milliseconds(1)
        return processor
    }
    func origin(_ offset: Int64 = 7) -> JobOrigin {
        JobOrigin(topic: "activity-sync.jobs", partition: 3, offset: offset, key: Array("acct-1".utf8), value: [1])
    }

    @Test func aSyncProducesActivitiesWithCloudEventsHeadersThenState() async throws {
        integration.set(.activities(2))
        let job = PoisonJobs.validJob()
        let result = await processor.process(
            job, origin: origin(), account: .found(try PoisonJobs.account()), state: nil)
        #expect(result.outcome == .synced)
        #expect(result.records.count == 2)
        let first = try #require(result.records.first)
        #expect(first.topic == "activity-sync.activities")
        #expect(first.key == Array("acct-1".utf8))
        let headers = Dictionary(first.headers.map { ($0.key, String(decoding: $0.value, as: UTF8.self)) }) { a, _ in a
        }
        #expect(headers["ce_specversion"] == "1.0")
        #expect(headers["ce_id"]?.hasPrefix("fake:acct-1:") == true)
        #expect(headers["ce_type"] == CloudEvents.activityType)
        let state = try #require(result.stateRecords.first)
        #expect(state.topic == "activity-sync.state")
        #expect(state.partition == 3, "state goes to the jobs partition's twin")
        #expect(result.newState?.lastJob?.jobId == job.jobId)
        #expect(integration.calls.first?.config["access_token"] == "tok-123")
    }

    @Test func aDuplicateFireIsSkippedWithoutCallingTheIntegration() async throws {
        let job = PoisonJobs.validJob()
        let state = StateRecord(
            accountId: "acct-1", integration: "github",
            lastJob: JobMarker(jobId: job.jobId, scheduledAt: job.scheduledAt), updatedAt: Date(), data: [:])
        let result = await processor.process(
            job, origin: origin(), account: .found(try PoisonJobs.account()), state: state)
        #expect(result.outcome == .duplicate)
        #expect(result.records.isEmpty && result.stateRecords.isEmpty)
        #expect(integration.calls.isEmpty)
    }

    @Test func a401MarksTheStateAndTheNextTickDoesNotCallAgain() async throws {
        integration.set(.needsReauth)
        let job = PoisonJobs.validJob()
        let first = await processor.process(
            job, origin: origin(), account: .found(try PoisonJobs.account()), state: nil)
        #expect(first.outcome == .needsReauth)
        #expect(first.status?.status == .needsReauth)
        #expect(first.newState?.credentials?.rejected == true)
        var later = job
        later.scheduledAt += 300
        later.jobId = SyncJob.makeId(accountId: later.accountId, scheduledAt: later.scheduledAt)
        let second = await processor.process(
            later, origin: origin(8), account: .found(try PoisonJobs.account()), state: first.newState)
        #expect(second.outcome == .needsReauth)
        #expect(integration.calls.count == 1, "no retry loop against a rejected token")
        // Reconnecting the account (a new sealed config) runs again.
        integration.set(.activities(1))
        var reconnected = try PoisonJobs.account()
        reconnected.sealedConfig = try FakeSealer().seal(["access_token": "tok-new"])
        let third = await processor.process(
            later, origin: origin(9), account: .found(reconnected), state: first.newState)
        #expect(third.outcome == .synced)
    }

    /// The status names the record the job ran with, so that schedulers hold back this record's jobs and only
    /// this record's: a reconnect (another version) fires again.
    @Test func aNeedsReauthStatusNamesTheRecordVersionItWasJudgedOn() async throws {
        integration.set(.needsReauth)
        let version = AccountVersion(recordBytes: try PoisonJobs.account().messageBytes())
        let job = PoisonJobs.validJob()
        let first = await processor.process(
            job, origin: origin(), account: .found(try PoisonJobs.account(), version: version), state: nil)
        #expect(first.status?.status == .needsReauth)
        #expect(first.status?.accountVersion == version.description)
        #expect(first.status?.holdsJobs(ofRecord: version) == true)
        var later = job
        later.scheduledAt += 300
        later.jobId = SyncJob.makeId(accountId: later.accountId, scheduledAt: later.scheduledAt)
        // Answered from the remembered rejection, without asking: same record, same version.
        let second = await processor.process(
            later, origin: origin(8), account: .found(try PoisonJobs.account(), version: version),
            state: first.newState)
        #expect(second.status?.accountVersion == version.description)
        #expect(integration.calls.count == 1)
    }

    @Test func aRefreshedTokenPairIsSealedIntoTheStateAndUsedNextTime() async throws {
        integration.set(.refresh)
        let job = PoisonJobs.validJob()
        let first = await processor.process(
            job, origin: origin(), account: .found(try PoisonJobs.account()), state: nil)
        let refreshed = try #require(first.newState?.credentials?.refreshed)
        #expect(!String(decoding: first.stateRecords[0].value!, as: UTF8.self).contains("new-token"))
        #expect(try FakeSealer().open(refreshed)["access_token"] == "new-token")
        integration.set(.activities(0))
        var later = job
        later.scheduledAt += 300
        later.jobId = SyncJob.makeId(accountId: later.accountId, scheduledAt: later.scheduledAt)
        _ = await processor.process(
            later, origin: origin(8), account: .found(try PoisonJobs.account()), state: first.newState)
        #expect(integration.calls.last?.config["access_token"] == "new-token")
    }

    @Test func transientErrorsAreRetriedThenReportedWithoutOutput() async throws {
        integration.set(.transientThenOK(2))
        let ok = await processor.process(
            PoisonJobs.validJob(), origin: origin(), account: .found(try PoisonJobs.account()), state: nil)
        #expect(ok.outcome == .synced)
        #expect(integration.calls.count == 3)
        let failing = FakeIntegration()
        failing.set(.transientThenOK(100))
        var processor = self.processor
        processor.integrations = IntegrationRegistry([failing])
        let failed = await processor.process(
            PoisonJobs.validJob(), origin: origin(), account: .found(try PoisonJobs.account()), state: nil)
        #expect(failed.outcome == .failed)
        #expect(failed.records.isEmpty, "no activity")
        // The state as it was (the next attempt re-reads), with the failure streak that backs the next ticks off.
        #expect(failed.newState?.data == [:] && failed.newState?.lastJob == nil)
        #expect(failed.newState?.failures?.count == 1)
        #expect(failed.status?.status == .failing)
    }

    /// A paused account's job is not run (no request to the integration), writes nothing but its run record, and
    /// says why; the status stays as it was.
    @Test func aPausedAccountsJobIsSkipped() async throws {
        var account = try PoisonJobs.account()
        account.settings.paused = AccountSettings.Pause(reason: .manual, at: Date(), note: "migrating")
        let result = await processor.process(
            PoisonJobs.validJob(), origin: origin(), account: .found(account), state: nil)
        #expect(result.outcome == .paused)
        #expect(result.records.isEmpty && result.stateRecords.isEmpty && result.status == nil)
        #expect(result.reason?.hasPrefix("paused") == true && result.reason?.contains("migrating") == true)
        #expect(RunRecorder.outcome(of: result).0 == .skipped)
        #expect(integration.calls.isEmpty)
    }

    /// A failing account's ticks thin out: after a failure the next ticks are skipped (no request) until its backoff
    /// passed, doubling per failure; a success ends the streak; a changed account record starts it afresh; a week of
    /// failures pauses the account.
    @Test func aFailingAccountBacksOffAndAWeekOfFailuresPausesIt() async throws {
        integration.set(.transientThenOK(100))
        var processor = self.processor
        processor.maxAttempts = 1
        let account = try PoisonJobs.account()
        let t0 = Date()
        func job(_ at: Date) -> SyncJob {
            let tick = Date(timeIntervalSince1970: at.timeIntervalSince1970.rounded(.down))
            return SyncJob(accountId: "acct-1", integration: "github", scheduledAt: tick)
        }
        let first = await processor.process(job(t0), origin: origin(), account: .found(account), state: nil, now: t0)
        #expect(first.outcome == .failed && first.newState?.failures?.count == 1)
        #expect(first.status?.reason?.contains("1 in a row") == true)
        let wait = processor.backoff(1, accountId: "acct-1").timeInterval
        #expect((48...72).contains(wait), "a minute ±20 %: \(wait)")
        // A tick inside the backoff: skipped, GitHub not asked.
        let soon = t0.addingTimeInterval(wait / 2)
        let skipped = await processor.process(
            job(soon), origin: origin(8), account: .found(account), state: first.newState, now: soon)
        #expect(skipped.outcome == .backingOff && integration.calls.count == 1)
        #expect(skipped.reason?.hasPrefix("backing off: 1 failed") == true)
        #expect(RunRecorder.outcome(of: skipped).0 == .skipped)
        // Past it: attempted again; a second failure doubles the wait.
        let later = t0.addingTimeInterval(wait + 1)
        let second = await processor.process(
            job(later), origin: origin(9), account: .found(account), state: first.newState, now: later)
        #expect(second.outcome == .failed && second.newState?.failures?.count == 2)
        #expect(second.newState?.failures?.since == first.newState?.failures?.since)
        #expect(abs(processor.backoff(2, accountId: "acct-1").timeInterval - 2 * wait) < 1)
        // The account reconnected (its record changed) after the failures: tried at once.
        var reconnected = account
        reconnected.updatedAt = later.addingTimeInterval(1)
        let fresh = later.addingTimeInterval(2)
        let retried = await processor.process(
            job(fresh), origin: origin(10), account: .found(reconnected), state: second.newState, now: fresh)
        #expect(retried.outcome == .failed && retried.newState?.failures?.count == 1, "a new streak")
        // A success ends the streak.
        integration.set(.activities(1))
        let recovered = t0.addingTimeInterval(3_600)
        let ok = await processor.process(
            job(recovered), origin: origin(11), account: .found(account), state: second.newState, now: recovered)
        #expect(ok.outcome == .synced && ok.newState?.failures == nil)
        // A week of failures: paused until the record changes.
        var week = second.newState
        week?.failures = FailureStreak(
            count: 40, since: t0.addingTimeInterval(-8 * 86_400), last: t0.addingTimeInterval(-86_400))
        var connectedLongAgo = account
        connectedLongAgo.updatedAt = t0.addingTimeInterval(-30 * 86_400)
        let paused = await processor.process(
            job(t0), origin: origin(12), account: .found(connectedLongAgo), state: week, now: t0)
        #expect(paused.outcome == .backingOff && paused.reason?.hasPrefix("auto_paused") == true)
    }

    /// A sync that stored a refreshed pair and then failed: its failure record keeps the pair (the old one is dead).
    @Test func aFailedSyncKeepsThePairItStored() async throws {
        struct RefreshThenFail: Integration {
            let key = "github"
            func spec() -> JSONValue { [:] }
            func setup(oauthResponse: JSONValue) async throws -> AccountSetup {
                AccountSetup(accountId: "", config: [:], settings: [:])
            }
            func sync(_ request: SyncRequest) async throws -> SyncOutcome {
                try await request.saveRefreshedConfig?(["access_token": "tok-new"])
                throw IntegrationError(.transient, "502 after the refresh")
            }
        }
        var processor = self.processor
        processor.integrations = IntegrationRegistry([RefreshThenFail()])
        processor.maxAttempts = 1
        let saved = Mutex<[CredentialState]>([])
        let result = await processor.process(
            PoisonJobs.validJob(), origin: origin(), account: .found(try PoisonJobs.account()), state: nil,
            saveCredentials: { pair in saved.withLock { $0.append(pair) } })
        #expect(result.outcome == .failed)
        let pair = try #require(saved.withLock { $0.first })
        #expect(result.newState?.credentials == pair, "the failure record keeps the stored pair")
        #expect(try FakeSealer().open(try #require(pair.refreshed))["access_token"] == "tok-new")
    }

    /// The accounts topic could not be read in time: not the job's fault, so no dead letter; the integration is not
    /// called, nothing but the account's status is written, and the next tick runs it.
    @Test func anAccountRecordThatCannotBeReadFailsTheJobWithoutOutput() async throws {
        let result = await processor.process(
            PoisonJobs.validJob(), origin: origin(), account: .unavailable("timed out"), state: nil)
        #expect(result.outcome == .failed)
        #expect(result.records.isEmpty && result.stateRecords.isEmpty)
        #expect(result.status?.status == .failing)
        #expect(result.status?.reason?.contains("timed out") == true)
        #expect(integration.calls.isEmpty)
    }

    @Test func permanentFailuresGoToTheDeadLetterTopic() async throws {
        integration.set(.permanent)
        let result = await processor.process(
            PoisonJobs.validJob(), origin: origin(), account: .found(try PoisonJobs.account()), state: nil)
        #expect(result.outcome == .deadLettered)
        let letter = try #require(result.records.first)
        #expect(letter.topic == "activity-sync.jobs.dlq")
        let headers = Dictionary(letter.headers.map { ($0.key, String(decoding: $0.value, as: UTF8.self)) }) { a, _ in a
        }
        #expect(headers[DeadLetterHeader.code] == "permanent_failure")
        #expect(headers[DeadLetterHeader.originalOffset] == "7")
        #expect(headers[DeadLetterHeader.originalPartition] == "3")
    }
}
