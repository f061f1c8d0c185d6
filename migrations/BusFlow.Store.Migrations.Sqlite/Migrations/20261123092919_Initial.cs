using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace BusFlow.Store.Migrations.Sqlite.Migrations
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
                    Id = table.Column<long>(type: "INTEGER", nullable: false)
                        .Annotation("Sqlite:Autoincrement", true),
                    Position = table.Column<long>(type: "INTEGER", nullable: true),
                    PipelineId = table.Column<Guid>(type: "TEXT", nullable: false),
                    Seq = table.Column<long>(type: "INTEGER", nullable: false),
                    Type = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    Timestamp = table.Column<long>(type: "INTEGER", nullable: false),
                    Payload = table.Column<string>(type: "TEXT", nullable: false),
                    DeliveredAt = table.Column<long>(type: "INTEGER", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_events", x => x.Id);
                });

            migrationBuilder.CreateTable(
                name: "busflow_idempotency_keys",
                columns: table => new
                {
                    Scope = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    Key = table.Column<string>(type: "TEXT", maxLength: 256, nullable: false),
                    RequestHash = table.Column<string>(type: "TEXT", maxLength: 128, nullable: false),
                    PipelineId = table.Column<Guid>(type: "TEXT", nullable: false),
                    CreatedAt = table.Column<long>(type: "INTEGER", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_idempotency_keys", x => new { x.Scope, x.Key });
                });

            migrationBuilder.CreateTable(
                name: "busflow_inbox",
                columns: table => new
                {
                    MessageId = table.Column<Guid>(type: "TEXT", nullable: false),
                    Consumer = table.Column<string>(type: "TEXT", maxLength: 256, nullable: false),
                    ReceivedAt = table.Column<long>(type: "INTEGER", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_inbox", x => new { x.MessageId, x.Consumer });
                });

            migrationBuilder.CreateTable(
                name: "busflow_leases",
                columns: table => new
                {
                    Name = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    Owner = table.Column<string>(type: "TEXT", maxLength: 200, nullable: true),
                    ExpiresAt = table.Column<long>(type: "INTEGER", nullable: false),
                    LastPosition = table.Column<long>(type: "INTEGER", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_leases", x => x.Name);
                });

            migrationBuilder.CreateTable(
                name: "busflow_outbox",
                columns: table => new
                {
                    Id = table.Column<long>(type: "INTEGER", nullable: false)
                        .Annotation("Sqlite:Autoincrement", true),
                    MessageId = table.Column<Guid>(type: "TEXT", nullable: false),
                    PipelineId = table.Column<Guid>(type: "TEXT", nullable: false),
                    Destination = table.Column<string>(type: "TEXT", maxLength: 512, nullable: true),
                    MessageType = table.Column<string>(type: "TEXT", maxLength: 256, nullable: false),
                    Body = table.Column<string>(type: "TEXT", nullable: false),
                    CreatedAt = table.Column<long>(type: "INTEGER", nullable: false),
                    DeliveredAt = table.Column<long>(type: "INTEGER", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_outbox", x => x.Id);
                });

            migrationBuilder.CreateTable(
                name: "busflow_pipelines",
                columns: table => new
                {
                    PipelineId = table.Column<Guid>(type: "TEXT", nullable: false),
                    CurrentState = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    Version = table.Column<int>(type: "INTEGER", nullable: false),
                    Status = table.Column<string>(type: "TEXT", maxLength: 16, nullable: false),
                    Definition = table.Column<string>(type: "TEXT", maxLength: 200, nullable: false),
                    Input = table.Column<string>(type: "TEXT", nullable: true),
                    Tags = table.Column<string>(type: "TEXT", nullable: false),
                    ParentPipelineId = table.Column<Guid>(type: "TEXT", nullable: true),
                    ParentStepName = table.Column<string>(type: "TEXT", maxLength: 200, nullable: true),
                    LastSeq = table.Column<long>(type: "INTEGER", nullable: false),
                    StartedAt = table.Column<long>(type: "INTEGER", nullable: false),
                    FinishedAt = table.Column<long>(type: "INTEGER", nullable: true),
                    NextDeadline = table.Column<long>(type: "INTEGER", nullable: true),
                    Error = table.Column<string>(type: "TEXT", nullable: true),
                    FailedStep = table.Column<string>(type: "TEXT", maxLength: 200, nullable: true),
                    Steps = table.Column<string>(type: "TEXT", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_pipelines", x => x.PipelineId);
                });

            migrationBuilder.CreateTable(
                name: "busflow_suspensions",
                columns: table => new
                {
                    SuspendId = table.Column<Guid>(type: "TEXT", nullable: false),
                    PipelineId = table.Column<Guid>(type: "TEXT", nullable: false),
                    StepName = table.Column<string>(type: "TEXT", maxLength: 200, nullable: false),
                    ItemIndex = table.Column<int>(type: "INTEGER", nullable: true),
                    CreatedAt = table.Column<long>(type: "INTEGER", nullable: false),
                    ExpiresAt = table.Column<long>(type: "INTEGER", nullable: true),
                    ClosedAt = table.Column<long>(type: "INTEGER", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_busflow_suspensions", x => x.SuspendId);
                });

            migrationBuilder.InsertData(
                table: "busflow_leases",
                columns: new[] { "Name", "ExpiresAt", "LastPosition", "Owner" },
                values: new object[] { "outbox", 1272537022464000000L, 0L, null });

            migrationBuilder.CreateIndex(
                name: "IX_busflow_events_DeliveredAt",
                table: "busflow_events",
                column: "DeliveredAt");

            migrationBuilder.CreateIndex(
                name: "IX_busflow_events_PipelineId_Seq",
                table: "busflow_events",
                columns: new[] { "PipelineId", "Seq" },
                unique: true);

            migrationBuilder.CreateIndex(
                name: "IX_busflow_events_Position",
                table: "busflow_events",
                column: "Position",
                unique: true);

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
        }
    }
}
