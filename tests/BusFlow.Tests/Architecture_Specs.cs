using System.Xml.Linq;

namespace BusFlow.Tests;

/// <summary>
/// The dependency rule of docs/architecture.md ("Who may reference whom"), read from the project
/// files: a production project that references another project beyond its row, or opens its
/// internals to another production assembly (a store reaches the engine through its public
/// extension points), fails here.
/// </summary>
public class When_projects_reference_each_other
{
    private static readonly Dictionary<string, string[]> Allowed = new(StringComparer.Ordinal)
    {
        ["BusFlow.Contracts"] = [],
        ["BusFlow"] = ["BusFlow.Contracts"],
        ["BusFlow.Store"] = ["BusFlow"],
        ["BusFlow.Store.Migrations.Sqlite"] = ["BusFlow.Store"],
        ["BusFlow.Store.Migrations.Postgres"] = ["BusFlow.Store"],
        ["BusFlow.Store.Migrations.SqlServer"] = ["BusFlow.Store"],
        ["BusFlow.Store.Migrations.Tooling"] = ["BusFlow.Store.Migrations.Sqlite", "BusFlow.Store.Migrations.Postgres", "BusFlow.Store.Migrations.SqlServer"],
        ["BusFlow.Edge"] = ["BusFlow"],
        ["BusFlow.OpenTelemetry"] = ["BusFlow"],
        ["BusFlow.Client"] = ["BusFlow.Contracts"],
        ["BusFlow.Cli"] = ["BusFlow.Client"],
        ["BusFlow.Host"] = ["BusFlow", "BusFlow.Store", "BusFlow.Edge", "BusFlow.OpenTelemetry", "BusFlow.Store.Migrations.Sqlite", "BusFlow.Store.Migrations.Postgres", "BusFlow.Store.Migrations.SqlServer"],
    };

    public static TheoryData<string> Projects() => [.. ProductionProjects().Select(p => Path.GetFileNameWithoutExtension(p))];

    [Theory]
    [MemberData(nameof(Projects))]
    public void Should_reference_only_what_its_row_allows(string project)
    {
        Assert.True(Allowed.TryGetValue(project, out var allowed), $"{project} has no row in docs/architecture.md's dependency table (and in this spec)");
        var references = ProjectReferences(project).ToList();

        Assert.All(references, r => Assert.True(allowed.Contains(r), $"{project} references {r}; its row allows {(allowed.Length == 0 ? "nothing" : string.Join(", ", allowed))}"));
    }

    [Theory]
    [MemberData(nameof(Projects))]
    public void Should_open_its_internals_to_tests_only(string project)
    {
        var opened = Project(project).Descendants("InternalsVisibleTo").Select(e => (string)e.Attribute("Include")!);
        Assert.All(opened, to => Assert.True(to.EndsWith(".Tests", StringComparison.Ordinal) || to is "BusFlow.IntegrationTests" or "BusFlow.Benchmarks", $"{project} opens its internals to {to}"));
    }

    [Fact]
    public void Should_find_every_production_project()
    {
        // A rule that reads no project would hold for any code.
        Assert.Equal(Allowed.Keys.Order(StringComparer.Ordinal), ProductionProjects().Select(p => Path.GetFileNameWithoutExtension(p)).Order(StringComparer.Ordinal));
        Assert.Contains("BusFlow.Store", ProjectReferences("BusFlow.Host"));
    }

    private static IEnumerable<string> ProjectReferences(string project) =>
        Project(project).Descendants("ProjectReference").Select(e => Path.GetFileNameWithoutExtension(((string)e.Attribute("Include")!).Replace('\\', '/')));

    private static XDocument Project(string name) => XDocument.Load(ProductionProjects().Single(p => Path.GetFileNameWithoutExtension(p) == name));

    private static IEnumerable<string> ProductionProjects()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "BusFlow.sln")))
        {
            root = root.Parent;
        }

        Assert.NotNull(root);
        return new[] { "src", "migrations" }.SelectMany(folder => Directory.EnumerateFiles(Path.Combine(root.FullName, folder), "*.csproj", SearchOption.AllDirectories))
            .Where(p => !p.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal) && !p.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", StringComparison.Ordinal));
    }
}
