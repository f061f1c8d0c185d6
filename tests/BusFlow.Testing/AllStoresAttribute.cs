using System.Reflection;
using BusFlow.Store;
using Xunit.Sdk;

namespace BusFlow.Testing;

/// <summary>
/// Runs a store spec once per store provider (SQLite, PostgreSQL, SQL Server), the provider as its
/// first argument and <paramref name="arguments"/> after it; apply it more than once for more rows.
/// Use it with <c>[SkippableTheory]</c>: <see cref="TestDatabase.Create"/> skips the SQL Server case,
/// by name and with the reason, unless BUSFLOW_TEST_SQLSERVER names a server.
/// </summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = true)]
public sealed class AllStoresAttribute(params object[] arguments) : DataAttribute
{
    public override IEnumerable<object[]> GetData(MethodInfo testMethod) =>
        Enum.GetValues<StoreProviderKind>().Select(provider => (object[])[provider, .. arguments]);
}
