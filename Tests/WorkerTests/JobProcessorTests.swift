import Foundation
import SyncModel
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
        let result = await processor.process(job, origin: origin(), account: .found(try PoisonJobs.account()), state: nil)
        #expect(result.outcome == .synced)
        #expect(result.records.count == 2)
        let first = try #require(result.records.first)
        #expect(first.topic == "activity-sync.activities")
        #expect(first.key == Array("acct-1".utf8))
        let headers = Dictionary(first.headers.map { ($0.key, String(decoding: $0.value, as: UTF8.self)) }) { a, _ in a }
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
        let result = await processor.process(job, origin: origin(), account: .found(try PoisonJobs.account()), state: state)
        #expect(result.outcome == .duplicate)
        #expect(result.records.isEmpty && result.stateRecords.isEmpty)
        #expect(integration.calls.isEmpty)
    }

    @Test func a401MarksTheStateAndTheNextTickDoesNotCallAgain() async throws {
        integration.set(.needsReauth)
        let job = PoisonJobs.validJob()
        let first = await processor.process(job, origin: origin(), account: .found(try PoisonJobs.account()), state: nil)
        #expect(first.outcome == .needsReauth)
        #expect(first.status?.status == .needsReauth)
        #expect(first.newState?.credentials?.rejected == true)
        var later = job
        later.scheduledAt += 300
        later.jobId = SyncJob.makeId(accountId: later.accountId, scheduledAt: later.scheduledAt)
        let second = await processor.process(later, origin: origin(8), account: .found(try PoisonJobs.account()), state: first.newState)
        #expect(second.outcome == .needsReauth)
        #expect(integration.calls.count == 1, "no retry loop against a rejected token")
        // Reconnecting the account (a new sealed config) runs again.
        integration.set(.activities(1))
        var reconnected = try PoisonJobs.account()
        reconnected.sealedConfig = try FakeSealer().seal(["access_token": "tok-new"])
        let third = await processor.process(later, origin: origin(9), account: .found(reconnected), state: first.newState)
        #expect(third.outcome == .synced)
    }

    @Test func aRefreshedTokenPairIsSealedIntoTheStateAndUsedNextTime() async throws {
        integration.set(.refresh)
        let job = PoisonJobs.validJob()
        let first = await processor.process(job, origin: origin(), account: .found(try PoisonJobs.account()), state: nil)
        let refreshed = try #require(first.newState?.credentials?.refreshed)
        #expect(!String(decoding: first.stateRecords[0].value!, as: UTF8.self).contains("new-token"))
        #expect(try FakeSealer().open(refreshed)["access_token"] == "new-token")
        integration.set(.activities(0))
        var later = job
        later.scheduledAt += 300
        later.jobId = SyncJob.makeId(accountId: later.accountId, scheduledAt: later.scheduledAt)
        _ = await processor.process(later, origin: origin(8), account: .found(try PoisonJobs.account()), state: first.newState)
        #expect(integration.calls.last?.config["access_token"] == "new-token")
    }

    @Test func transientErrorsAreRetriedThenReportedWithoutOutput() async throws {
        integration.set(.transientThenOK(2))
        let ok = await processor.process(PoisonJobs.validJob(), origin: origin(), account: .found(try PoisonJobs.account()), state: nil)
        #expect(ok.outcome == .synced)
        #expect(integration.calls.count == 3)
        let failing = FakeIntegration()
        failing.set(.transientThenOK(100))
        var processor = self.processor
        processor.integrations = IntegrationRegistry([failing])
        let failed = await processor.process(PoisonJobs.validJob(), origin: origin(), account: .found(try PoisonJobs.account()), state: nil)
        #expect(failed.outcome == .failed)
        #expect(failed.records.isEmpty && failed.stateRecords.isEmpty, "state unchanged: the next tick re-reads")
        #expect(failed.status?.status == .failing)
    }

    /// A paused account's job is not run (no request to the integration), writes nothing but its run record, and
    /// says why; the status stays as it was.
    @Test func aPausedAccountsJobIsSkipped() async throws {
        var account = try PoisonJobs.account()
        account.settings.paused = AccountSettings.Pause(reason: .manual, at: Date(), note: "migrating")
        let result = await processor.process(PoisonJobs.validJob(), origin: origin(), account: .found(account), state: nil)
        #expect(result.outcome == .paused)
        #expect(result.records.isEmpty && result.stateRecords.isEmpty && result.status == nil)
        #expect(result.reason?.hasPrefix("paused") == true && result.reason?.contains("migrating") == true)
        #expect(RunRecorder.outcome(of: result).0 == .skipped)
        #expect(integration.calls.isEmpty)
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
        let result = await processor.process(PoisonJobs.validJob(), origin: origin(), account: .found(try PoisonJobs.account()), state: nil)
        #expect(result.outcome == .deadLettered)
        let letter = try #require(result.records.first)
        #expect(letter.topic == "activity-sync.jobs.dlq")
        let headers = Dictionary(letter.headers.map { ($0.key, String(decoding: $0.value, as: UTF8.self)) }) { a, _ in a }
        #expect(headers[DeadLetterHeader.code] == "permanent_failure")
        #expect(headers[DeadLetterHeader.originalOffset] == "7")
        #expect(headers[DeadLetterHeader.originalPartition] == "3")
    }
}
