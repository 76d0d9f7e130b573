import ArgumentParser

struct GitHubBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "github")
}
