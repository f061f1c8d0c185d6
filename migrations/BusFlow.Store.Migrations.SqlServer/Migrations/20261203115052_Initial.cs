using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

#pragma warning disable CA1814 // Prefer jagged arrays over multidimensional

namespace BusFlow.Store.Migrations.SqlServer.Migrations
{
    /// <inheritdoc />
    public partial class Initial : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "busflow_events",
                columns: table => new
                {
                    Id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("SqlServer:Identity", "1, 1"),
                    Position = table.Column<long>(type: "bigint", nullable: true),
                    PipelineId = table.Column<Guid>(type: "uniqueidentifier", nullable: false),
                    Seq = table.Column<long>(type: "bigint", nullable: false),
                    Type = table.Column<string>(type: "nvarchar(64)", maxLength: 64, nullable: false, collation: "Latin1_General_100_BIN2"),
                    Tenant = table.Column<string>(type: "nvarchar(450)", nullable: true, collation: "Latin1_General_100_BIN2"),
                    Timestamp = table.Column<DateTimeOffset>(type: "datetimeoffset", nullable: false),
                    Payload = table.Column<string>(type: "nvarchar(max)", nullable: false, collation: "Latin1_General_100_BIN2")
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_events", x => x.Id);
                });

            migrationBuilder.CreateTable(
                name: "busflow_idempotency_keys",
                columns: table => new
                {
                    Scope = table.Column<string>(type: "nvarchar(64)", maxLength: 64, nullable: false, collation: "Latin1_General_100_BIN2"),
                    Key = table.Column<string>(type: "nvarchar(256)", maxLength: 256, nullable: false, collation: "Latin1_General_100_BIN2"),
                    RequestHash = table.Column<string>(type: "nvarchar(128)", maxLength: 128, nullable: false, collation: "Latin1_General_100_BIN2"),
                    PipelineId = table.Column<Guid>(type: "uniqueidentifier", nullable: false),
                    CreatedAt = table.Column<DateTimeOffset>(type: "datetimeoffset", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_idempotency_keys", x => new { x.Scope, x.Key });
                });

            migrationBuilder.CreateTable(
                name: "busflow_inbox",
                columns: table => new
                {
                    MessageId = table.Column<Guid>(type: "uniqueidentifier", nullable: false),
                    Consumer = table.Column<string>(type: "nvarchar(256)", maxLength: 256, nullable: false, collation: "Latin1_General_100_BIN2"),
                    ReceivedAt = table.Column<DateTimeOffset>(type: "datetimeoffset", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_inbox", x => new { x.MessageId, x.Consumer });
                });

            migrationBuilder.CreateTable(
                name: "busflow_leases",
                columns: table => new
                {
                    Name = table.Column<string>(type: "nvarchar(64)", maxLength: 64, nullable: false, collation: "Latin1_General_100_BIN2"),
                    Owner = table.Column<string>(type: "nvarchar(200)", maxLength: 200, nullable: true, collation: "Latin1_General_100_BIN2"),
                    ExpiresAt = table.Column<DateTimeOffset>(type: "datetimeoffset", nullable: false),
                    LastPosition = table.Column<long>(type: "bigint", nullable: false),
                    DeliveredUpTo = table.Column<long>(type: "bigint", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_leases", x => x.Name);
                });

            migrationBuilder.CreateTable(
                name: "busflow_outbox",
                columns: table => new
                {
                    Id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("SqlServer:Identity", "1, 1"),
                    MessageId = table.Column<Guid>(type: "uniqueidentifier", nullable: false),
                    PipelineId = table.Column<Guid>(type: "uniqueidentifier", nullable: false),
                    Destination = table.Column<string>(type: "nvarchar(512)", maxLength: 512, nullable: true, collation: "Latin1_General_100_BIN2"),
                    MessageType = table.Column<string>(type: "nvarchar(256)", maxLength: 256, nullable: false, collation: "Latin1_General_100_BIN2"),
                    Body = table.Column<string>(type: "nvarchar(max)", nullable: false, collation: "Latin1_General_100_BIN2"),
                    CreatedAt = table.Column<DateTimeOffset>(type: "datetimeoffset", nullable: false),
                    DeliveredAt = table.Column<DateTimeOffset>(type: "datetimeoffset", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_outbox", x => x.Id);
                });

            migrationBuilder.CreateTable(
                name: "busflow_pipelines",
                columns: table => new
                {
                    PipelineId = table.Column<Guid>(type: "uniqueidentifier", nullable: false),
                    CurrentState = table.Column<string>(type: "nvarchar(64)", maxLength: 64, nullable: false, collation: "Latin1_General_100_BIN2"),
                    Version = table.Column<int>(type: "int", nullable: false),
                    Status = table.Column<string>(type: "nvarchar(16)", maxLength: 16, nullable: false),
                    Definition = table.Column<string>(type: "nvarchar(200)", maxLength: 200, nullable: false, collation: "Latin1_General_100_BIN2"),
                    DefinitionVersion = table.Column<string>(type: "nvarchar(64)", maxLength: 64, nullable: false, defaultValue: "", collation: "Latin1_General_100_BIN2"),
                    TraceParent = table.Column<string>(type: "nvarchar(64)", maxLength: 64, nullable: true, collation: "Latin1_General_100_BIN2"),
                    Input = table.Column<string>(type: "nvarchar(max)", nullable: true),
                    Tags = table.Column<string>(type: "nvarchar(max)", nullable: false),
                    Tenant = table.Column<string>(type: "nvarchar(450)", nullable: true, collation: "Latin1_General_100_BIN2"),
                    ParentPipelineId = table.Column<Guid>(type: "uniqueidentifier", nullable: true),
                    ParentStepName = table.Column<string>(type: "nvarchar(200)", maxLength: 200, nullable: true, collation: "Latin1_General_100_BIN2"),
                    LastSeq = table.Column<long>(type: "bigint", nullable: false),
                    StartedAt = table.Column<DateTimeOffset>(type: "datetimeoffset", nullable: false),
                    FinishedAt = table.Column<DateTimeOffset>(type: "datetimeoffset", nullable: true),
                    NextDeadline = table.Column<DateTimeOffset>(type: "datetimeoffset", nullable: true),
                    Error = table.Column<string>(type: "nvarchar(max)", nullable: true),
                    FailedStep = table.Column<string>(type: "nvarchar(200)", maxLength: 200, nullable: true, collation: "Latin1_General_100_BIN2"),
                    Steps = table.Column<string>(type: "nvarchar(max)", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_pipelines", x => x.PipelineId);
                });

            migrationBuilder.CreateTable(
                name: "busflow_suspensions",
                columns: table => new
                {
                    SuspendId = table.Column<Guid>(type: "uniqueidentifier", nullable: false),
                    PipelineId = table.Column<Guid>(type: "uniqueidentifier", nullable: false),
                    StepName = table.Column<string>(type: "nvarchar(200)", maxLength: 200, nullable: false, collation: "Latin1_General_100_BIN2"),
                    ItemIndex = table.Column<int>(type: "int", nullable: true),
                    CreatedAt = table.Column<DateTimeOffset>(type: "datetimeoffset", nullable: false),
                    ExpiresAt = table.Column<DateTimeOffset>(type: "datetimeoffset", nullable: true),
                    ClosedAt = table.Column<DateTimeOffset>(type: "datetimeoffset", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_suspensions", x => x.SuspendId);
                });

            migrationBuilder.CreateTable(
                name: "busflow_work_items",
                columns: table => new
                {
                    PipelineId = table.Column<Guid>(type: "uniqueidentifier", nullable: false),
                    Step = table.Column<int>(type: "int", nullable: false),
                    ItemIndex = table.Column<int>(type: "int", nullable: false),
                    Body = table.Column<string>(type: "nvarchar(max)", nullable: false, collation: "Latin1_General_100_BIN2")
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_work_items", x => new { x.PipelineId, x.Step, x.ItemIndex });
                });

            migrationBuilder.InsertData(
                table: "busflow_leases",
                columns: new[] { "Name", "DeliveredUpTo", "ExpiresAt", "LastPosition", "Owner" },
                values: new object[,]
                {
                    { "outbox", 0L, new DateTimeOffset(new DateTime(1970, 1, 1, 0, 0, 0, 0, DateTimeKind.Unspecified), new TimeSpan(0, 0, 0, 0, 0)), 0L, null },
                    { "positions", 0L, new DateTimeOffset(new DateTime(1970, 1, 1, 0, 0, 0, 0, DateTimeKind.Unspecified), new TimeSpan(0, 0, 0, 0, 0)), 0L, null }
                });

            migrationBuilder.CreateIndex(
                name: "IX_busflow_events_PipelineId_Seq",
                table: "busflow_events",
                columns: new[] { "PipelineId", "Seq" },
                unique: true);

            migrationBuilder.CreateIndex(
                name: "IX_busflow_events_Position",
                table: "busflow_events",
                column: "Position",
                unique: true,
                filter: "[Position] IS NOT NULL");

            migrationBuilder.CreateIndex(
                name: "IX_busflow_events_Tenant_Position",
                table: "busflow_events",
                columns: new[] { "Tenant", "Position" });

            migrationBuilder.CreateIndex(
                name: "IX_busflow_inbox_ReceivedAt",
                table: "busflow_inbox",
                column: "ReceivedAt");

            migrationBuilder.CreateIndex(
                name: "IX_busflow_outbox_DeliveredAt",
                table: "busflow_outbox",
                column: "DeliveredAt");

            migrationBuilder.CreateIndex(
                name: "IX_busflow_outbox_PipelineId",
                table: "busflow_outbox",
                column: "PipelineId");

            migrationBuilder.CreateIndex(
                name: "IX_busflow_pipelines_FinishedAt",
                table: "busflow_pipelines",
                column: "FinishedAt");

            migrationBuilder.CreateIndex(
                name: "IX_busflow_pipelines_NextDeadline",
                table: "busflow_pipelines",
                column: "NextDeadline");

            migrationBuilder.CreateIndex(
                name: "IX_busflow_pipelines_ParentPipelineId",
                table: "busflow_pipelines",
                column: "ParentPipelineId");

            migrationBuilder.CreateIndex(
                name: "IX_busflow_pipelines_Status_Definition_DefinitionVersion",
                table: "busflow_pipelines",
                columns: new[] { "Status", "Definition", "DefinitionVersion" });

            migrationBuilder.CreateIndex(
                name: "IX_busflow_pipelines_Tenant_StartedAt",
                table: "busflow_pipelines",
                columns: new[] { "Tenant", "StartedAt" });

            migrationBuilder.CreateIndex(
                name: "IX_busflow_suspensions_PipelineId",
                table: "busflow_suspensions",
                column: "PipelineId");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "busflow_events");

            migrationBuilder.DropTable(
                name: "busflow_idempotency_keys");

            migrationBuilder.DropTable(
                name: "busflow_inbox");

            migrationBuilder.DropTable(
                name: "busflow_leases");

            migrationBuilder.DropTable(
                name: "busflow_outbox");

            migrationBuilder.DropTable(
                name: "busflow_pipelines");

            migrationBuilder.DropTable(
                name: "busflow_suspensions");

            migrationBuilder.DropTable(
                name: "busflow_work_items");
        }
    }
}
