using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace BusFlow.Store.Migrations.Sqlite.Migrations
{
    /// <inheritdoc />
    public partial class TenantColumns : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "Tenant",
                table: "busflow_pipelines",
                type: "TEXT",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "Tenant",
                table: "busflow_events",
                type: "TEXT",
                nullable: true);

            // Rows written before this migration: the tenant from their tags (written by hand; EF Core
            // generated the rest). Only rows whose JSON names a tenant are parsed; as json, not
            // jsonb, which refuses an escaped NUL that System.Text.Json may have written.
            migrationBuilder.Sql("""UPDATE busflow_pipelines SET "Tenant" = json_extract("Tags", '$.tenant') WHERE "Tags" LIKE '%"tenant"%';""");
            migrationBuilder.Sql("""UPDATE busflow_events SET "Tenant" = json_extract("Payload", '$.tags.tenant') WHERE "Payload" LIKE '%"tenant"%';""");

            migrationBuilder.CreateIndex(
                name: "IX_busflow_pipelines_Tenant_StartedAt",
                table: "busflow_pipelines",
                columns: new[] { "Tenant", "StartedAt" });

            migrationBuilder.CreateIndex(
                name: "IX_busflow_events_Tenant_Position",
                table: "busflow_events",
                columns: new[] { "Tenant", "Position" });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_busflow_pipelines_Tenant_StartedAt",
                table: "busflow_pipelines");

            migrationBuilder.DropIndex(
                name: "IX_busflow_events_Tenant_Position",
                table: "busflow_events");

            migrationBuilder.DropColumn(
                name: "Tenant",
                table: "busflow_pipelines");

            migrationBuilder.DropColumn(
                name: "Tenant",
                table: "busflow_events");
        }
    }
}
