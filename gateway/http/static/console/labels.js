// Chinese names for what the API returns as identifiers (departments, levels, fields, effects).
// Identifiers stay visible next to the name: officers write them in policy lines.

export const DEPARTMENTS = {
  medical_insurance: "医疗保障局",
  civil_affairs: "民政",
  rural_revitalization: "乡村振兴局",
  health: "卫生健康委",
  public_security: "公安",
  disabled_federation: "残联",
  human_resources: "人社",
  big_data: "大数据局",
};

export const LEVELS = { province: "省级", city: "市级", county: "县级", "*": "各级" };

export const PURPOSES = {
  relief_recognition: "救助对象认定",
  enrollment_verification: "参保核查",
  high_cost_monitoring: "高额医疗费用监测预警",
  benefit_settlement: "待遇结算",
  supervision: "监督管理",
  data_correction: "数据核实纠错",
};

// The purpose a clerk of each department typically declares (prefill of the simulation form).
export const USUAL_PURPOSE = {
  medical_insurance: "benefit_settlement",
  civil_affairs: "relief_recognition",
  rural_revitalization: "relief_recognition",
  health: "enrollment_verification",
};

export const TYPES = {
  rows: "人员范围 (可见哪些人)",
  Person: "人员",
  Household: "户",
  ReliefStatus: "救助身份",
  Enrollment: "参保记录",
  CostBurden: "医疗费用负担",
  Ingest: "数据报送 (操作)",
  Loop: "救助闭环 (操作)",
  Statistics: "统计 (操作)",
  Webhook: "推送端点 (操作)",
};

// Objects that are operations (granted with the action "call"), not person fields.
export const OPERATION_TYPES = new Set(["Ingest", "Loop", "Statistics", "Webhook"]);

// Fields with a masked form (authz/resources.py MASKABLE_FIELDS): a mask grant elsewhere
// releases nothing.
export const MASKABLE = new Set([
  "Person.idNumber",
  "Person.name",
  "Person.phone",
  "Person.address",
]);

export const FIELDS = {
  "Person.idNumber": "身份证号码",
  "Person.name": "姓名",
  "Person.gender": "性别",
  "Person.birthDate": "出生日期",
  "Person.phone": "联系电话",
  "Person.address": "家庭住址",
  "Person.household": "所在户",
  "Person.reliefStatuses": "救助身份",
  "Person.enrollments": "参保记录",
  "Person.costBurdens": "医疗费用负担",
  "Person.underVerification": "核实中",
  "Person.provenance": "数据来源",
  "Person.effectiveRelief": "有效救助身份",
  "Household.members": "户内成员",
  "ReliefStatus.sourceDepartment": "认定部门",
  "ReliefStatus.recognizedOn": "认定日期",
  "ReliefStatus.validFrom": "有效期起",
  "ReliefStatus.validTo": "有效期止",
  "ReliefStatus.provenance": "数据来源",
  "Enrollment.insuranceType": "险种类型",
  "Enrollment.status": "参保状态",
  "Enrollment.regionCode": "参保地区划",
  "Enrollment.subsidyCategory": "资助参保类别",
  "Enrollment.subsidyAmount": "资助金额",
  "Enrollment.provenance": "数据来源",
  "CostBurden.totalCost": "医疗总费用",
  "CostBurden.basicInsurancePaid": "基本医保支付",
  "CostBurden.criticalIllnessPaid": "大病保险支付",
  "CostBurden.medicalAssistancePaid": "医疗救助支付",
  "CostBurden.personalBurden": "个人负担",
  "CostBurden.inpatientCount": "住院次数",
  "CostBurden.provenance": "数据来源",
  "Ingest.batches": "查看报送批次",
  "Ingest.submitRecords": "实时报送数据",
  "Ingest.anomalies": "查看回传异常",
  "Ingest.resolveAnomaly": "处理回传异常",
  "Loop.warnings": "高额费用预警",
  "Loop.tasks": "待办任务",
  "Loop.answerTask": "办理任务",
  "Loop.otherDepartments": "查看其他部门的任务",
  "Loop.reliefChain": "救助链条",
  "Loop.coverage": "参保覆盖",
  "Statistics.read": "汇总统计",
  "Webhook.manage": "管理推送端点和推送记录",
  // What an administrator's own actions release, as their audit entries record it
  // (schema/audit.py, schema/simulation.py): no person field, but audited like one.
  "Simulation.shapes": "模拟结果的结构 (不含数据值)",
  "AuditLog.entries": "审计记录",
  "AuditLog.explanation": "审计记录的解释",
  "AuditLog.chain": "审计哈希链校验",
  "Policy.change": "访问策略变更",
  "Webhook.change": "推送端点管理 (登记、轮换密钥、停用、重新投递)",
  // A command run on the server (gateway/storage/admin_audit.py): its role and details.
  "Admin.role": "管理员角色",
  "Admin.key": "密钥",
  "Admin.algorithm": "算法",
  "Admin.client": "部门系统",
  "Admin.months": "月份",
  "Admin.before": "截止月份",
};

// Token roles (CONTRACT.md: administrator roles, mutually exclusive; security_officer is the
// old name of security_admin).
export const ROLES = {
  security_officer: "安全管理员",
  security_admin: "安全管理员",
  audit_admin: "审计管理员",
  system_admin: "系统管理员",
};

// Operation names the gateway itself records in the audit log (the name a query document gives
// itself is shown as written, it is the caller's identifier).
export const OPERATIONS = {
  anonymous: "未命名的查询",
  auditLog: "查询审计日志",
  auditChain: "校验审计哈希链",
  explainAccess: "查看访问解释",
  simulateAccess: "模拟访问",
  proposePolicyChange: "提出策略变更",
  proposePolicyRollback: "提出策略回滚",
  approvePolicyChange: "批准策略变更",
  rejectPolicyChange: "驳回或撤回策略变更",
  registerWebhookEndpoint: "登记推送端点",
  rotateWebhookSecret: "轮换推送密钥",
  disableWebhookEndpoint: "停用推送端点",
  replayDeliveries: "重新投递死信",
};

// Commands run on the server, as their audit entries name them ("relief-gateway keys rotate").
const COMMAND_PREFIX = "relief-gateway ";

// Effects: colour AND text AND a symbol, so no one depends on colour alone.
export const EFFECTS = {
  READ: { text: "可读", symbol: "✓", className: "effect-read" },
  MASK: { text: "脱敏", symbol: "◐", className: "effect-mask" },
  DENY: { text: "拒绝", symbol: "✕", className: "effect-deny" },
};
export const OPERATION_EFFECTS = {
  READ: { text: "允许", symbol: "✓", className: "effect-read" },
  MASK: { text: "允许", symbol: "✓", className: "effect-read" },
  DENY: { text: "拒绝", symbol: "✕", className: "effect-deny" },
};

export const ACTIONS = { READ: "可读", MASK: "脱敏", ROWS: "人员范围", CALL: "调用" };

export const PROPOSAL_STATUS = {
  PENDING: "待审批",
  APPROVED: "已批准",
  REJECTED: "已驳回",
  STALE: "已过期",
};

// The API records a withdrawal as REJECTED by the proposer, its note prefixed (authz/admin.py).
export const WITHDRAWN_NOTE = "(申请人撤回)";

export function proposalStatusName(proposal) {
  if (proposal.status === "REJECTED" && String(proposal.decisionNote || "").startsWith(WITHDRAWN_NOTE)) {
    return "已撤回";
  }
  return PROPOSAL_STATUS[proposal.status] || proposal.status;
}

export function typeOf(object) {
  const match = /^([A-Za-z]+)/.exec(object);
  return match ? match[1] : object;
}

/** "Person(all)", "Person(category: …)": which people a subject sees (action "rows"). */
export function isRowScope(object) {
  return object.includes("(");
}

export function isOperation(object) {
  return !isRowScope(object) && OPERATION_TYPES.has(typeOf(object));
}

/** The grid's row groups: the record type, or "rows" for the row scopes. */
export function groupOf(object) {
  return isRowScope(object) ? "rows" : typeOf(object);
}

/** The action that grants an object: read/mask for fields, call, or rows. */
export function grantAction(object) {
  if (isRowScope(object)) return "ROWS";
  return isOperation(object) ? "CALL" : "READ";
}

const ROW_SCOPES = { all: "辖区内全部人员", pushed: "推送给本部门的人员" };
// The places that bring a person into the jurisdiction (gateway/domain/places.py).
const PLACES = { residence: "居住地", identity: "身份认定地", insured: "参保地", addressed: "推送地" };

/** "Person(all; places: residence|insured)" → "辖区内全部人员 (居住地或参保地在本辖区)". */
function rowScopeName(field) {
  const match = /^Person\(([^;()]*)(?:;\s*places:\s*([^()]*))?\)$/.exec(field);
  if (!match) return null;
  const body = match[1].trim();
  let who = ROW_SCOPES[body];
  if (!who && body.startsWith("category:")) {
    who = `持有特定救助身份的人员 (${body.slice(9).split("|").length} 类)`;
  }
  if (!who) return null;
  if (!match[2]) return who;
  const places = match[2].split("|").map((kind) => PLACES[kind.trim()] || kind.trim());
  return `${who} (${places.join("或")}在本辖区)`;
}

export function fieldName(field) {
  if (FIELDS[field]) return FIELDS[field];
  const glob = /^([A-Za-z]+)\.\*$/.exec(field);
  if (glob) return `${TYPES[glob[1]] || glob[1]}的全部字段`;
  return rowScopeName(field) || field;
}

/** A row condition as `me`, simulations and explanations give it ("all; places: residence"). */
export function rowConditionName(condition) {
  const object = condition.startsWith("Person(") ? condition : `Person(${condition})`;
  return rowScopeName(object) || condition;
}

/** A text from the API that quotes policy lines in 「…」: the quoted code as <code>. */
export function withCode(text, h) {
  return String(text)
    .split(/「([^」]*)」/)
    .map((part, index) => (index % 2 ? ["「", h("code", {}, part), "」"] : part));
}

export function roleName(role) {
  return ROLES[role] || role;
}

export function operationName(operation) {
  if (String(operation).startsWith(COMMAND_PREFIX)) return "服务器命令行操作";
  return OPERATIONS[operation] || "";
}

export function effectLabel(effect, field = "") {
  const table = isOperation(field) || isRowScope(field) ? OPERATION_EFFECTS : EFFECTS;
  return table[effect] || { text: effect, symbol: "?", className: "effect-unknown" };
}

export function departmentName(department) {
  return DEPARTMENTS[String(department).toLowerCase()] || department;
}

export function levelName(level) {
  return LEVELS[String(level).toLowerCase()] || level;
}

export function purposeName(purpose) {
  if (!purpose || purpose === "*") return "全部用途";
  return PURPOSES[purpose] || purpose;
}

/** "civil_affairs@3701:county" → {department, region, level}; null for role lines. */
export function parseSubject(subject) {
  const match = /^([a-z_]+)(?:@(\d+))?:([a-z*]+)$/.exec(subject);
  if (!match) return null;
  return { department: match[1], region: match[2] || "", level: match[3] };
}

export function subjectName(subject) {
  const parsed = parseSubject(subject);
  if (!parsed) {
    return subject.startsWith("role:") ? `角色: ${roleName(subject.slice(5))}` : subject;
  }
  const where = parsed.region ? ` (限区划 ${parsed.region})` : "";
  return `${departmentName(parsed.department)} ${levelName(parsed.level)}${where}`;
}

export function formatTime(value) {
  if (!value) return "";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  const pad = (n) => String(n).padStart(2, "0");
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
  );
}

/** A proposal's id as people read it: a UUID shortened to its first 8 characters. */
export function shortId(id) {
  const text = String(id);
  return text.length > 12 ? text.slice(0, 8) : text;
}
