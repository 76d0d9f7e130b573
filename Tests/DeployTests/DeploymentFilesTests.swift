import ActivitySyncTesting
import Foundation
import Testing

/// docker-compose.yml and deploy/k8s/ must validate against the schemas in `../shared/schemas`, with the exact
/// commands that `../shared/schemas/README.md` gives (copied below unchanged), so an operator who runs those
/// commands by hand sees what this test sees.
@Suite(.enabled(if: pythonChecksEnabled, "ACTIVITY_SYNC_SKIP_PYTHON=1"), .timeLimit(.minutes(2)))
struct DeploymentFilesTests {
    /// `../shared/schemas/README.md`, "docker-compose.yml" — verbatim, hence the long line.
    static let composeValidator = """
        import sys,json,yaml,jsonschema; s=json.load(open(sys.argv[1])); d=yaml.safe_load(open(sys.argv[2])); errs=list(jsonschema.Draft7Validator(s).iter_errors(d)); [print(sys.argv[2]+":", "/".join(map(str,e.absolute_path)) or "<root>", "-", e.message) for e in errs]; print(sys.argv[2], "OK" if not errs else "INVALID"); sys.exit(1 if errs else 0)
        """

    /// `../shared/schemas/README.md`, "A folder of Kubernetes manifests".
    static let kubernetesValidator = """

        import sys, json, glob, os, yaml, jsonschema
        sd, md = sys.argv[1], sys.argv[2]
        idx = {}
        for f in glob.glob(os.path.join(sd, "*.json")):
            s = json.load(open(f))
            for g in s.get("x-kubernetes-group-version-kind", []):
                idx[((g["group"] + "/" if g["group"] else "") + g["version"], g["kind"])] = s
            p = s.get("properties", {})
            if "enum" in p.get("apiVersion", {}) and "enum" in p.get("kind", {}):
                idx[(p["apiVersion"]["enum"][0], p["kind"]["enum"][0])] = s
        bad = 0
        for f in sorted(glob.glob(os.path.join(md, "**", "*.y*ml"), recursive=True)):
            for i, d in enumerate(yaml.safe_load_all(open(f))):
                if not d: continue
                key = (d.get("apiVersion"), d.get("kind")); s = idx.get(key)
                if s is None: print(f"{f}[{i}]: SKIP no schema for {key}"); continue
                errs = list(jsonschema.Draft202012Validator(s).iter_errors(d))
                for e in errs: print(f"{f}[{i}] {key[1]}:", "/".join(map(str, e.absolute_path)) or "<root>", "-", e.message[:200])
                print(f"{f}[{i}] {key[1]}", "OK" if not errs else "INVALID"); bad += bool(errs)
        sys.exit(1 if bad else 0)

        """

    @Test("docker-compose.yml validates against the Compose specification")
    func composeFileValidates() async throws {
        let shared = try RepoPaths.sharedOrFail()
        let result = try await runProcess(
            "python3",
            [
                "-c", Self.composeValidator, shared.appendingPathComponent("schemas/compose-spec.json").path,
                "docker-compose.yml",
            ])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("docker-compose.yml OK"), "\(result.output)")
    }

    @Test("every manifest in deploy/k8s validates against the strict Kubernetes and KEDA schemas")
    func kubernetesManifestsValidate() async throws {
        let shared = try RepoPaths.sharedOrFail()
        let result = try await runProcess(
            "python3",
            ["-c", Self.kubernetesValidator, shared.appendingPathComponent("schemas/kubernetes").path, "deploy/k8s"])
        #expect(result.status == 0, "\(result.output)")
        // Each kind we ship was actually checked, not skipped for want of a schema.
        for kind in [
            "Deployment", "StatefulSet", "Service", "PodDisruptionBudget", "ConfigMap", "Secret", "ServiceAccount",
            "NetworkPolicy", "ScaledObject",
        ] {
            #expect(result.output.contains("\(kind) OK"), "no validated \(kind) in:\n\(result.output)")
        }
    }

    @Test("the Kubernetes validator rejects a manifest with a misspelled field, so the check above can fail")
    func kubernetesValidatorRejectsUnknownField() async throws {
        let shared = try RepoPaths.sharedOrFail()
        let folder = FileManager.default.temporaryDirectory
            .appendingPathComponent("deploytests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let worker = try String(
            contentsOf: RepoPaths.root.appendingPathComponent("deploy/k8s/worker.yaml"),
            encoding: .utf8)
        let broken = worker.replacingOccurrences(of: "terminationGracePeriodSeconds:", with: "terminationGraceSeconds:")
        #expect(broken != worker)
        try broken.write(to: folder.appendingPathComponent("worker.yaml"), atomically: true, encoding: .utf8)

        let result = try await runProcess(
            "python3",
            ["-c", Self.kubernetesValidator, shared.appendingPathComponent("schemas/kubernetes").path, folder.path])
        #expect(result.status == 1, "\(result.output)")
        #expect(result.output.contains("terminationGraceSeconds"), "\(result.output)")
    }

    @Test("KEDA never scales workers past the jobs topic's partition count that compose creates")
    func workerCeilingMatchesPartitions() async throws {
        let script = """
            import sys, yaml
            compose = yaml.safe_load(open("docker-compose.yml"))
            command = compose["services"]["topics"]["command"]
            partitions = int(command[command.index("--partitions") + 1])
            scaled = next(d for d in yaml.safe_load_all(open("deploy/k8s/keda-scaledobject.yaml")) if d)
            trigger = scaled["spec"]["triggers"][0]["metadata"]
            print(partitions, scaled["spec"]["maxReplicaCount"], trigger["topic"], trigger["consumerGroup"])
            """
        let result = try await runProcess("python3", ["-c", script])
        #expect(result.status == 0, "\(result.output)")
        let fields = result.output.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        try #require(fields.count == 4, "\(result.output)")
        let partitions = try #require(Int(fields[0])), maxReplicas = try #require(Int(fields[1]))
        #expect(maxReplicas <= partitions)
        #expect(fields[2] == "activity-sync.jobs")
        #expect(fields[3] == "activity-sync-workers")
    }
}
