// Every GraphQL document the console sends, in one place (tests/test_console.py validates each
// against the gateway's schema). Template strings whose only interpolations are the constants
// defined above them (shared selections); values always travel as variables.

const LINE = `subject object action purpose region editable`;

export const ME = `
query ConsoleMe {
  me { subject department level region roles }
}`;

export const MATRIX = `
query ConsoleMatrix($proposalId: ID) {
  policyMatrix(proposalId: $proposalId) {
    version proposalId subjects fields
    cells { subject field effect changed }
  }
}`;

export const POLICIES = `
query ConsolePolicies {
  policies { version lines { ${LINE} } }
}`;

export const PROPOSE = `
mutation ConsolePropose($title: String!, $note: String, $add: [PolicyLineInput!]!,
                        $remove: [PolicyLineInput!]!) {
  proposePolicyChange(title: $title, note: $note, add: $add, remove: $remove) {
    id status title baseVersion
  }
}`;

const PROPOSAL = `
  id status title note proposedBy proposedAt baseVersion
  decidedBy decidedAt decisionNote resultingVersion canApprove
  added { ${LINE} }
  removed { ${LINE} }
  fieldChanges { subject field before after }
`;

export const PROPOSALS = `
query ConsoleProposals($status: ProposalStatus, $first: Int) {
  policyProposals(status: $status, first: $first) {
    totalCount
    edges { node { ${PROPOSAL} } }
  }
}`;

export const APPROVE = `
mutation ConsoleApprove($id: ID!, $note: String) {
  approvePolicyChange(id: $id, note: $note) { id status resultingVersion }
}`;

export const REJECT = `
mutation ConsoleReject($id: ID!, $note: String!) {
  rejectPolicyChange(id: $id, note: $note) { id status }
}`;

export const VERSIONS = `
query ConsoleVersions($first: Int, $after: String) {
  policyVersions(first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { version createdAt createdBy approvedBy note proposalId lineCount } }
  }
}`;

export const ROLLBACK = `
mutation ConsoleRollback($version: Int!, $note: String) {
  proposePolicyRollback(version: $version, note: $note) { id status title }
}`;

const OUTCOME = `
  policyVersion rowScope people data
  fieldAccess { field effect }
  errors { path code message }
`;

export const SIMULATE = `
query ConsoleSimulate($proposalId: ID!, $subject: SimulatedSubject!, $query: String!) {
  simulateAccess(proposalId: $proposalId, subject: $subject, query: $query) {
    peopleGained peopleLost identical
    fieldChanges { subject field before after }
    current { ${OUTCOME} }
    proposed { ${OUTCOME} }
  }
}`;

export const AUDIT_LOG = `
query ConsoleAuditLog($filter: AuditFilter, $first: Int, $after: String) {
  auditLog(filter: $filter, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges {
      node {
        id occurredAt requestId subject department level region purpose operation
        policyVersion personCount
        fields { field effect }
      }
    }
  }
}`;

export const AUDIT_CHAIN = `
query ConsoleAuditChain {
  auditChain { entries ok firstBadId reason }
}`;

export const EXPLAIN = `
query ConsoleExplain($id: ID!) {
  explainAccess(auditEntryId: $id) {
    entryId occurredAt subject department level region purpose policyVersion subjectKeys
    fields { field effect released reason lines { ${LINE} } }
    rows { condition lines { ${LINE} } }
  }
}`;
