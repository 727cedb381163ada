// The test page: the README's React example, given relay's URL and the session in the query.
import { createRoot } from "react-dom/client";
import { RelayChat } from "../../examples/react/chat.jsx";

const query = new URLSearchParams(location.search);
createRoot(document.getElementById("root")).render(
  <RelayChat relayUrl={query.get("relay")} sessionId={query.get("sid")} follow={query.get("follow") !== "0"} />,
);
