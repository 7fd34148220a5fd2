// Every GraphQL document the workbench sends, in one place (tests/test_workbench.py validates
// each against the gateway's schema). Template strings whose only interpolations are the
// constants defined above them (shared selections); values always travel as variables.

export const ME = `
query WorkbenchMe {
  me { subject department level region roles purpose policyVersion rowScope operations }
}`;

// Asked once per known purpose: a purpose is offered when it shows the caller some rows and
// some field (authz/purpose.py reads_person_data), as the gateway itself decides.
export const ME_PURPOSE = `
query WorkbenchPurpose {
  me { purpose rowScope fieldAccess { field effect } }
}`;

const PERSON = `id idNumber name regionCode`;

const TASK = `
  id kind department regionCode category openedOn dueOn state overdue workingDaysLeft
  answer answerCategory answeredOn answeredBy note deliveredAt readAt readBy
  warning { id rule ruleDescription month }
  person { ${PERSON} }
`;

const TASK_PAGE = `totalCount pageInfo { hasNextPage endCursor } edges { node { ${TASK} } }`;

export const TASKS = `
query WorkbenchTasks($filter: TaskFilter, $first: Int!, $after: String) {
  tasks(filter: $filter, first: $first, after: $after) { ${TASK_PAGE} }
}`;

// 未办结: every unanswered state at once (each ordered by due date; merged on the page), with
// the count of each state for the filter's badges.
export const OPEN_TASKS = `
query WorkbenchOpenTasks($first: Int!) {
  overdue: tasks(filter: {state: OVERDUE}, first: $first) { ${TASK_PAGE} }
  dueSoon: tasks(filter: {state: DUE_SOON}, first: $first) { ${TASK_PAGE} }
  open: tasks(filter: {state: OPEN}, first: $first) { ${TASK_PAGE} }
  waiting: tasks(filter: {state: WAITING}, first: $first) { ${TASK_PAGE} }
  answered: tasks(filter: {state: ANSWERED}, first: 0) { totalCount }
}`;

// 已阅回执: the tasks of the clerk's own department shown on screen (issue 18 item 4)
export const ACKNOWLEDGE_TASKS = `
mutation AcknowledgeTasks($ids: [ID!]!) {
  acknowledgeTasks(ids: $ids) { acknowledged tasks { id readAt readBy } }
}`;

export const ANSWER_TASK = `
mutation WorkbenchAnswerTask($taskId: ID!, $answer: TaskAnswer!, $category: ReliefCategory,
                             $note: String) {
  answerTask(taskId: $taskId, answer: $answer, category: $category, note: $note) {
    reliefStatusCreated
    task { ${TASK} }
  }
}`;

export const WARNINGS = `
query WorkbenchWarnings($filter: WarningFilter, $first: Int!, $after: String) {
  warnings(filter: $filter, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges {
      node {
        id month year rule ruleDescription measure threshold attention regionCode figure
        person { ${PERSON} }
        tasks { id kind department state dueOn workingDaysLeft answer answerCategory answeredOn }
      }
    }
  }
}`;

const ANOMALY = `
  id kind description department relatedDepartment openedOn dueOn overdue status
  resolution resolvedOn resolvedBy note batchId
  person { ${PERSON} }
`;

export const ANOMALIES = `
query WorkbenchAnomalies($filter: AnomalyFilter, $first: Int!, $after: String) {
  anomalies(filter: $filter, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { ${ANOMALY} } }
  }
}`;

export const OPEN_ANOMALIES = `
query WorkbenchOpenAnomalies {
  anomalies(filter: {status: OPEN}, first: 0) { totalCount }
}`;

export const RESOLVE_ANOMALY = `
mutation WorkbenchResolveAnomaly($id: ID!, $resolution: AnomalyResolution!, $note: String) {
  resolveAnomaly(id: $id, resolution: $resolution, note: $note) { ${ANOMALY} }
}`;

const COUNTS = `
  rowsTotal rowsAccepted rowsRejected rowsUnchanged added exited identityChanged updated
  unmatched anomaliesOpened
`;

export const BATCHES = `
query WorkbenchBatches($filter: BatchFilter, $first: Int!, $after: String) {
  batches(filter: $filter, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges {
      node {
        id department feed channel fileName region submittedBy receivedAt finishedAt status
        counts { ${COUNTS} }
      }
    }
  }
}`;

export const RELIEF_CHAIN = `
query WorkbenchReliefChain($idNumber: String!) {
  reliefChain(idNumber: $idNumber) {
    person {
      id idNumber name gender birthDate regionCode underVerification
      reliefStatuses { category sourceDepartment recognizedOn validFrom validTo }
    }
    events { date kind department category summary taskId warningId anomalyId }
  }
}`;
