// Chinese names for what the API returns as enum values. Department, level and purpose names
// are the console's (one table for both pages); the rest are the schema's descriptions
// (tests/test_workbench.py checks every enum value has a name here).

export {
  DEPARTMENTS,
  PURPOSES,
  departmentName,
  formatTime,
  levelName,
  purposeName,
} from "/console/labels.js";

export const CATEGORIES = {
  EXTREME_POVERTY: "特困人员",
  MINIMUM_LIVING: "低保对象",
  MINIMUM_LIVING_EDGE: "低保边缘家庭成员",
  RIGID_EXPENDITURE: "刚性支出困难家庭成员",
  SERIOUS_ILLNESS: "因病致贫重病患者",
  RETURNED_TO_POVERTY: "返贫致贫人口",
  MONITORED_UNSTABLE: "脱贫不稳定人口",
  MONITORED_MARGINAL: "边缘易致贫人口",
  MONITORED_SUDDEN_HARDSHIP: "突发严重困难人口",
  LIFTED_FROM_POVERTY: "脱贫人口",
  ORPHAN: "孤儿",
  UNSUPPORTED_CHILD: "事实无人抚养儿童",
  SEVERE_DISABILITY: "重度残疾人",
};

export const TASK_STATES = {
  OVERDUE: "已超期",
  DUE_SOON: "临期",
  OPEN: "待办",
  WAITING: "待补充材料",
  ANSWERED: "已答复",
};

export const TASK_KINDS = {
  WARNING_REVIEW: "高额费用预警核查",
  IDENTITY_VERIFICATION: "救助身份参保核查",
};

// TaskAnswer: which answers each kind of task takes (the enum's descriptions; the gateway
// refuses any other: gateway/loop/tasks.py ANSWERS_BY_KIND).
export const ANSWERS = {
  RECOGNIZED: "已认定为救助对象",
  NOT_ELIGIBLE: "经核查不符合认定条件",
  IDENTITY_MARKED: "已完成参保核查和身份标识",
  NOT_ENROLLED: "未参保, 已动员参保",
  NEEDS_MORE_INFORMATION: "需补充材料",
};
export const ANSWERS_BY_KIND = {
  WARNING_REVIEW: ["RECOGNIZED", "NOT_ELIGIBLE", "NEEDS_MORE_INFORMATION"],
  IDENTITY_VERIFICATION: ["IDENTITY_MARKED", "NOT_ENROLLED", "NEEDS_MORE_INFORMATION"],
};

// The categories a department recognises (answer RECOGNIZED): those its identity feed maps
// labels to (adapters/mappings/*_identities.toml; gateway/loop/tasks.py recognisable_categories).
export const RECOGNISES = {
  civil_affairs: [
    "EXTREME_POVERTY",
    "MINIMUM_LIVING",
    "MINIMUM_LIVING_EDGE",
    "RIGID_EXPENDITURE",
    "SERIOUS_ILLNESS",
    "ORPHAN",
    "UNSUPPORTED_CHILD",
  ],
  rural_revitalization: [
    "RETURNED_TO_POVERTY",
    "MONITORED_UNSTABLE",
    "MONITORED_MARGINAL",
    "MONITORED_SUDDEN_HARDSHIP",
    "LIFTED_FROM_POVERTY",
  ],
  disabled_federation: ["SEVERE_DISABILITY"],
};

export const MEASURES = {
  PERSONAL_BURDEN: { name: "年度个人累计负担", unit: "元" },
  INPATIENT_COUNT: { name: "年度住院次数", unit: "次" },
};

export const ANOMALY_KINDS = {
  NAME_MISMATCH: "姓名与已登记的不一致",
  BIRTH_DATE_MISMATCH: "出生日期与身份证号码不一致",
  DECEASED_WITH_ACTIVE_STATUS: "已报告死亡但救助身份仍有效",
  DECEASED_STILL_ENROLLED: "已报告死亡但仍正常参保",
  EXITED_IDENTITY_ACTIVE_ELSEWHERE: "身份已被一个部门退出, 另一部门数据中仍有效",
  REPORTED_BY_ANOTHER_REGION: "另一辖区的同一部门也报送了该人员",
};

export const ANOMALY_STATUSES = {
  OPEN: "待核实",
  RESOLVED: "已处理",
};

export const RESOLUTIONS = {
  CORRECTED: "已更正 (更正后的数据另行报送)",
  CONFIRMED_CORRECT: "经核实本部门数据无误",
  NOT_APPLICABLE: "不属于异常",
  CORRECTED_BY_DATA: "后续报送的数据已消除差异 (系统自动关闭)",
};
// What a clerk may choose; CORRECTED_BY_DATA is set by the gateway itself.
export const CHOOSABLE_RESOLUTIONS = ["CORRECTED", "CONFIRMED_CORRECT", "NOT_APPLICABLE"];

export const BATCH_STATUSES = {
  RUNNING: "导入中",
  COMPLETED: "已完成",
  FAILED: "中断",
};
export const CHANNELS = {
  FILE: "文件导入",
  PUSH: "实时推送",
  SEED: "演示数据",
  ANSWER: "任务答复",
};

export const CHAIN_EVENTS = {
  IDENTITY_RECOGNIZED: "认定救助身份",
  ENROLLED: "正常参保",
  ENROLLMENT_SUSPENDED: "暂停参保",
  ENROLLMENT_TERMINATED: "终止参保",
  WARNING: "高额医疗费用预警",
  TASK_PUSHED: "推送部门核实",
  TASK_DELIVERED: "推送已送达部门业务系统",
  TASK_READ: "部门已查阅推送",
  TASK_ANSWERED: "部门答复核实结果",
  ANOMALY_OPENED: "数据异常回传",
  ANOMALY_RESOLVED: "来源部门处理异常",
  IDENTITY_EXITED: "救助身份终止",
  DEATH: "死亡",
};

export const GENDERS = {
  MALE: "男",
  FEMALE: "女",
};

// Ingest counts in the order and words of `relief-gateway ingest` (gateway/cli/ingest.py).
export const COUNTS = [
  ["rowsTotal", "总行数"],
  ["rowsAccepted", "接收"],
  ["rowsRejected", "拒收"],
  ["rowsUnchanged", "无变化"],
  ["added", "新增"],
  ["exited", "退出"],
  ["identityChanged", "身份变更"],
  ["updated", "信息更新"],
  ["unmatched", "未匹配"],
  ["anomaliesOpened", "新开异常"],
];

export function name(table, value) {
  if (value === null || value === undefined) return "";
  return table[value] || String(value);
}
