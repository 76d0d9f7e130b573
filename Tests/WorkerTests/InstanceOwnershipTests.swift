import Kafka
import Testing

@testable import Worker

/// Who holds a worker's group.instance.id after its consumer got a fatal FENCED_INSTANCE_ID: decided from the group's
/// member list, not from how long ago partitions were lost.
@Suite struct InstanceOwnershipTests {
    let ownership = InstanceOwnership(instanceId: "activity-sync-worker-a", token: "0000beef")
    let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e"

    @Test func theConsumerCarriesTheProcessTokenInItsClientId() {
        #expect(ownership.clientId == "activity-sync-worker-a/0000beef")
        let fresh = InstanceOwnership(instanceId: "x")
        #expect(fresh.token.count == 8 && fresh.token.allSatisfy(\.isHexDigit))
    }

    /// Issue 16, run 2: the fatal came 15 s into a revocation, 20 s after the loss — the coordinator's list shows
    /// this process's own consumer on the id (its own rejoin). Not another process.
    @Test func theIdHeldByThisProcessIsSelfFencing() {
        let members = [
            GroupMember(memberId: "activity-sync-worker-a-\(uuid)", clientId: ownership.clientId, host: "/10.0.0.1"),
            GroupMember(
                memberId: "activity-sync-worker-b-\(uuid)", clientId: "activity-sync-worker-b/12345678",
                host: "/10.0.0.1"),
        ]
        #expect(ownership.judge(.success(members)) == .thisProcess)
    }

    @Test func nobodyOnTheIdIsSelfFencing() {
        #expect(ownership.judge(.success([])) == .thisProcess)
    }

    @Test func theSameIdFromAnotherProcessIsAnotherProcess() {
        let other = GroupMember(
            memberId: "activity-sync-worker-a-\(uuid)", clientId: "activity-sync-worker-a/c0ffee00", host: "/10.0.0.1")
        #expect(ownership.judge(.success([other])) == .anotherProcess(other))
    }

    /// A worker of a version without the token: its member id is the static member id of this instance id.
    @Test func aStaticMemberOfThisIdWithAForeignClientIdIsAnotherProcess() {
        let other = GroupMember(
            memberId: "activity-sync-worker-a-\(uuid)", clientId: "activity-sync-worker-a", host: "/h")
        #expect(ownership.judge(.success([other])) == .anotherProcess(other))
    }

    /// Worker `a-2` is not worker `a`, though its ids start with `a`'s.
    @Test func aWorkerWhoseIdExtendsThisOneIsNotThisId() {
        let members = [
            GroupMember(
                memberId: "activity-sync-worker-a-2-\(uuid)", clientId: "activity-sync-worker-a-2/11112222", host: "/h"),
            GroupMember(memberId: "activity-sync-worker-a-2-\(uuid)", clientId: "activity-sync-worker-a-2", host: "/h"),
        ]
        #expect(ownership.judge(.success(members)) == .thisProcess)
    }

    @Test func anUnreadableGroupIsUnknown() {
        let error = KafkaError.transaction(librdkafkaCode: 14, message: "coordinator loading")
        guard case .unknown = ownership.judge(.failure(error)) else {
            Issue.record("expected unknown")
            return
        }
    }
}
